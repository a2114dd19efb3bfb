{
  "targets": [
    {
      "target_name": "netlink",
      "sources": ["netlink.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
