"""score-client: verified, resumable, parallel transfers through a Score server."""
