"""score-server: the REST broker that authorises requests and hands out pre-signed URLs."""
