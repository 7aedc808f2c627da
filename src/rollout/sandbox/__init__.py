"""The local sandbox: the United Cars example on folders that stand in for servers."""
