"""mdad's auth process: the only one that reads the users file."""

from common import child, userservice

if __name__ == "__main__":
    child.run("mdad", "auth", userservice.serve)
