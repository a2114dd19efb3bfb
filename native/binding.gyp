{
  "targets": [
    {
      "target_name": "netlink",
      "sources": ["netlink.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
