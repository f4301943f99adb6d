"""Helpers for the tests' FTP clients."""


def logged_in(ftp, user, password):
    """`ftp` (connected) after logging in as `user`; closed if the login fails."""
    try:
        ftp.login(user, password)
    except Exception:
        ftp.close()
        raise
    return ftp
