"""The front door: FTP server, watcher and publisher. Never touches the contacts store."""
