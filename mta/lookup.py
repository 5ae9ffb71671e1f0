"""mtad's lookup process: the only one that reads the users and aliases files."""

from common import child, userservice

if __name__ == "__main__":
    child.run("mtad", "lookup", userservice.serve)
