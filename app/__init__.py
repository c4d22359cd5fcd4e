"""The server: the HTTP api, the serving pipeline, accounting, settings and the command line."""
