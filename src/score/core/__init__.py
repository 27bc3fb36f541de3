"""Wire model and pure logic shared by server and client. Nothing here does I/O."""
