/*
 * netlink.node: a minimal netlink socket for Node (N-API 8, plain C).
 *
 * Why our own: the npm `netlink` package aborts the process when a recv
 * fails with ENOBUFS (an event storm overflowing the receive queue). Here
 * every syscall failure is a value handed to JavaScript, never an abort:
 *
 *   const s = new NetlinkSocket(protocol, (code, errno, buf) => { ... });
 *     code null  -> buf is one datagram from the kernel
 *     code 'ENOBUFS' (or any errno name) -> the receive failed, buf undefined;
 *     the socket stays usable (ENOBUFS: the kernel dropped messages).
 *   s.bind()                      -> nl_pid (number) | {errno, code}
 *   s.addMembership(group)        -> 0 | {errno, code}   (dropMembership alike)
 *   s.setsockopt(level, opt, int) -> 0 | {errno, code}
 *   s.getsockopt(level, opt)      -> int | {errno, code}
 *   s.send(buffer)                -> bytes sent | {errno, code}  (EAGAIN too)
 *   s.start() / s.pause()         -> start / stop reading (uv_poll)
 *   s.ref() / s.unref()           -> keep / don't keep the loop alive
 *   s.close()                     -> idempotent; safe inside the callback
 *   s.stats()                     -> { received, dropped, truncated }
 *
 * Only argument type errors throw (ordinary JS TypeErrors).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <node_api.h>
#include <uv.h>

/* Datagrams delivered per loop wakeup: bounded so a storm cannot starve the
 * rest of the loop (uv_poll is level-triggered: the rest comes next turn). */
#define MAX_DGRAMS_PER_WAKEUP 64
/* Netlink dump parts are at most 32 KiB; 64 KiB leaves room. Larger
 * datagrams (reported by MSG_TRUNC) grow the buffer for next time. */
#define INITIAL_RECV_BUF (64 * 1024)
#define MAX_CONSECUTIVE_POLL_ERRORS 64

typedef struct nlsock {
  napi_env env;
  int fd;                 /* -1 once closed */
  uv_poll_t poll;
  int poll_inited;        /* uv_poll_init succeeded and uv_close not yet completed */
  int poll_closing;       /* uv_close issued */
  int polling;            /* uv_poll_start active */
  int want_read;          /* start() was called and pause() was not */
  int refed;
  int finalized;          /* the JS object is gone */
  int in_callback;
  int js_released;
  int poll_errors;        /* consecutive poll errors without a datagram in between */        /* callback, async context and strong self-ref dropped */
  napi_ref self;          /* strong while open: an open socket is not collected */
  napi_ref callback;
  napi_async_context async_ctx;
  unsigned char *buf;
  size_t buflen;
  double received, dropped, truncated;
} nlsock;

/* ---- helpers ------------------------------------------------------------ */

#define CHECK(env, call)                                             \
  do {                                                               \
    napi_status status_ = (call);                                    \
    if (status_ != napi_ok) return throw_status((env), #call, status_); \
  } while (0)

static napi_value throw_status(napi_env env, const char *what, napi_status st) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return NULL;
  char msg[256];
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  snprintf(msg, sizeof msg, "netlink addon: %s failed (%d%s%s)", what, (int)st,
           info && info->error_message ? ": " : "", info && info->error_message ? info->error_message : "");
  napi_throw_error(env, "ERR_NETLINK_NAPI", msg);
  return NULL;
}

static const char *errno_name(int e) {
  const char *n = strerrorname_np(e);
  return n ? n : "EUNKNOWN";
}

/* {errno, code} */
static napi_value make_err(napi_env env, int e) {
  napi_value obj, num, str;
  if (napi_create_object(env, &obj) != napi_ok) return NULL;
  if (napi_create_int32(env, e, &num) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, errno_name(e), NAPI_AUTO_LENGTH, &str) != napi_ok) return NULL;
  if (napi_set_named_property(env, obj, "errno", num) != napi_ok) return NULL;
  if (napi_set_named_property(env, obj, "code", str) != napi_ok) return NULL;
  return obj;
}

static napi_value make_num(napi_env env, double v) {
  napi_value r;
  if (napi_create_double(env, v, &r) != napi_ok) return NULL;
  return r;
}

static napi_value undefined(napi_env env) {
  napi_value u;
  if (napi_get_undefined(env, &u) != napi_ok) return NULL;
  return u;
}

/* Unwraps `this`; throws (ordinary JS error) when it is not a socket. */
static nlsock *get_self(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value thisv;
  void *p = NULL;
  size_t n = argc ? *argc : 0;
  if (napi_get_cb_info(env, info, argc ? &n : NULL, argv, &thisv, NULL) != napi_ok) {
    throw_status(env, "napi_get_cb_info", napi_generic_failure);
    return NULL;
  }
  if (argc) *argc = n;
  if (napi_unwrap(env, thisv, &p) != napi_ok || !p) {
    napi_throw_type_error(env, "ERR_INVALID_THIS", "not a NetlinkSocket");
    return NULL;
  }
  return (nlsock *)p;
}

static int arg_int(napi_env env, napi_value v, const char *name, int32_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be a number", name);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return -1;
  }
  if (napi_get_value_int32(env, v, out) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", name);
    return -1;
  }
  return 0;
}

/* ---- lifetime ------------------------------------------------------------ */

static void maybe_free(nlsock *s) {
  if (s->finalized && !s->poll_inited) {
    free(s->buf);
    free(s);
  }
}

static void on_poll_closed(uv_handle_t *h) {
  nlsock *s = (nlsock *)h->data;
  s->poll_inited = 0;
  s->poll_closing = 0;
  maybe_free(s);
}

/* Releases the fd and the poll handle. Safe to call repeatedly and from
 * inside the data callback (the receive loop checks fd < 0 after each call). */
static void release_js(nlsock *s);
static void close_socket(nlsock *s, int from_finalizer) {
  if (s->poll_inited && !s->poll_closing) {
    if (s->polling) uv_poll_stop(&s->poll);
    s->polling = 0;
    s->poll_closing = 1;
    uv_close((uv_handle_t *)&s->poll, on_poll_closed);
  }
  if (s->fd >= 0) {
    close(s->fd);
    s->fd = -1;
  }
  s->want_read = 0;
  /* Inside the data callback napi_make_callback is still using the async
   * context and the callback reference: deliver() releases them on return. */
  if (!from_finalizer && !s->in_callback) release_js(s);
}

static void release_js(nlsock *s) {
  if (!s->js_released) {
    napi_env env = s->env;
    s->js_released = 1;
    if (s->callback) {
      napi_delete_reference(env, s->callback);
      s->callback = NULL;
    }
    if (s->async_ctx) {
      napi_async_destroy(env, s->async_ctx);
      s->async_ctx = NULL;
    }
    if (s->self) {
      /* Drop the strong reference: the object may now be collected. The
       * reference itself is deleted in the finalizer. */
      uint32_t rc = 0;
      napi_reference_unref(env, s->self, &rc);
    }
  }
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  nlsock *s = (nlsock *)data;
  /* napi references must not be used after the environment tears down;
   * the ones still held are released here without calling back into JS. */
  if (s->callback) { napi_delete_reference(env, s->callback); s->callback = NULL; }
  if (s->self) { napi_delete_reference(env, s->self); s->self = NULL; }
  if (s->async_ctx) { napi_async_destroy(env, s->async_ctx); s->async_ctx = NULL; }
  close_socket(s, 1);
  s->finalized = 1;
  maybe_free(s);
}

/* ---- receive --------------------------------------------------------------- */

/* Calls the JS callback as (code, errno, buffer). Returns 0, or -1 when the
 * environment cannot run JS any more. A JS exception becomes an uncaught
 * exception of the process (JS-level: 'uncaughtException' handlers see it),
 * never an abort. */
static int deliver(nlsock *s, int err, const unsigned char *data, size_t len) {
  napi_env env = s->env;
  napi_value cb, recv, argv[3], result;
  if (!s->callback) return -1;
  if (napi_get_reference_value(env, s->callback, &cb) != napi_ok || !cb) return -1;
  /* napi_make_callback wants an object as `this`: the socket itself. */
  recv = NULL;
  if (s->self) napi_get_reference_value(env, s->self, &recv);
  if (!recv && napi_get_global(env, &recv) != napi_ok) return -1;
  if (err) {
    if (napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &argv[0]) != napi_ok) return -1;
    if (napi_create_int32(env, err, &argv[1]) != napi_ok) return -1;
    if (napi_get_undefined(env, &argv[2]) != napi_ok) return -1;
  } else {
    void *copy;
    if (napi_get_null(env, &argv[0]) != napi_ok) return -1;
    if (napi_create_int32(env, 0, &argv[1]) != napi_ok) return -1;
    if (napi_create_buffer_copy(env, len, data, &copy, &argv[2]) != napi_ok) return -1;
  }
  s->in_callback = 1;
  napi_status st = napi_make_callback(env, s->async_ctx, recv, cb, 3, argv, &result);
  s->in_callback = 0;
  if (s->fd < 0 && !s->finalized) release_js(s); /* closed from inside the callback */
  if (st == napi_pending_exception) {
    napi_value exc;
    if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
    return 0;
  }
  return st == napi_ok ? 0 : -1;
}

static int update_poll(nlsock *s);
static void on_readable(uv_poll_t *h, int status, int events) {
  nlsock *s = (nlsock *)h->data;
  napi_handle_scope scope;
  (void)events;
  if (s->fd < 0 || s->finalized) return;
  if (napi_open_handle_scope(s->env, &scope) != napi_ok) return;
  if (status < 0) {
    /* libuv turns POLLERR into UV_EBADF and stops the handle. For netlink,
     * POLLERR means sk_err is set: ENOBUFS when the kernel dropped messages
     * for us. Read (and clear) the real error, report it, and poll again. */
    int soerr = 0;
    socklen_t len = sizeof soerr;
    s->polling = 0;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) {
      /* The fd itself is unusable: report and stay stopped. */
      deliver(s, errno, NULL, 0);
      s->want_read = 0;
      goto out;
    }
    if (++s->poll_errors > MAX_CONSECUTIVE_POLL_ERRORS) {
      /* An error condition that does not clear: do not spin on it. */
      deliver(s, soerr ? soerr : -status, NULL, 0);
      s->want_read = 0;
      goto out;
    }
    if (soerr) {
      if (deliver(s, soerr, NULL, 0) < 0) goto out;
    }
    if (s->fd < 0) goto out; /* closed from inside the callback */
    int r = update_poll(s);
    if (r < 0) {
      deliver(s, -r, NULL, 0);
      goto out;
    }
    /* fall through: data may be queued behind the error */
  }
  for (int i = 0; i < MAX_DGRAMS_PER_WAKEUP && s->fd >= 0; i++) {
    struct sockaddr_nl from;
    struct iovec iov = { s->buf, s->buflen };
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_name = &from;
    mh.msg_namelen = sizeof from;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    ssize_t n = recvmsg(s->fd, &mh, MSG_TRUNC | MSG_DONTWAIT);
    if (n < 0) {
      int e = errno;
      if (e == EINTR) continue;
      if (e == EAGAIN || e == EWOULDBLOCK) break;
      /* ENOBUFS (the kernel dropped messages) and anything else: a value. */
      if (deliver(s, e, NULL, 0) < 0) break;
      continue;
    }
    if ((size_t)n > s->buflen) {
      /* Truncated: the tail is lost. Report it and grow for next time. */
      s->truncated++;
      size_t want = (size_t)n + 4096;
      unsigned char *nb = realloc(s->buf, want);
      if (nb) { s->buf = nb; s->buflen = want; }
      if (deliver(s, EMSGSIZE, NULL, 0) < 0) break;
      continue;
    }
    if (mh.msg_namelen >= sizeof(struct sockaddr_nl) && from.nl_pid != 0) {
      /* Only the kernel talks to us; anything else is not a reply. */
      s->dropped++;
      continue;
    }
    s->received++;
    s->poll_errors = 0;
    if (deliver(s, 0, s->buf, (size_t)n) < 0) break;
  }
out:
  napi_close_handle_scope(s->env, scope);
}

static int update_poll(nlsock *s) {
  if (s->fd < 0 || !s->poll_inited || s->poll_closing) return 0;
  if (s->want_read && !s->polling) {
    int r = uv_poll_start(&s->poll, UV_READABLE, on_readable);
    if (r < 0) return r;
    s->polling = 1;
  } else if (!s->want_read && s->polling) {
    uv_poll_stop(&s->poll);
    s->polling = 0;
  }
  return 0;
}

/* ---- methods ----------------------------------------------------------------- */

static napi_value m_constructor(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], thisv, resname;
  int32_t proto;
  napi_valuetype t;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, &thisv, NULL));
  if (argc < 2) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "new NetlinkSocket(protocol, callback)");
    return NULL;
  }
  if (arg_int(env, argv[0], "protocol", &proto) < 0) return NULL;
  CHECK(env, napi_typeof(env, argv[1], &t));
  if (t != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "callback must be a function");
    return NULL;
  }
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
  if (fd < 0) {
    int e = errno;
    char msg[128];
    snprintf(msg, sizeof msg, "socket(AF_NETLINK, %d): %s (%s)", (int)proto, errno_name(e), strerror(e));
    napi_value err = make_err(env, e), m;
    napi_value jserr;
    if (!err) return NULL;
    CHECK(env, napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m));
    CHECK(env, napi_create_error(env, NULL, m, &jserr));
    napi_value code, num;
    CHECK(env, napi_create_string_utf8(env, errno_name(e), NAPI_AUTO_LENGTH, &code));
    CHECK(env, napi_create_int32(env, e, &num));
    CHECK(env, napi_set_named_property(env, jserr, "code", code));
    CHECK(env, napi_set_named_property(env, jserr, "errno", num));
    napi_throw(env, jserr);
    return NULL;
  }
  nlsock *s = calloc(1, sizeof *s);
  unsigned char *buf = malloc(INITIAL_RECV_BUF);
  if (!s || !buf) {
    free(s); free(buf); close(fd);
    napi_throw_error(env, "ENOMEM", "netlink addon: out of memory");
    return NULL;
  }
  s->env = env;
  s->fd = fd;
  s->buf = buf;
  s->buflen = INITIAL_RECV_BUF;
  s->refed = 1;
  uv_loop_t *loop = NULL;
  napi_status st = napi_get_uv_event_loop(env, &loop);
  int r = st == napi_ok && loop ? uv_poll_init(loop, &s->poll, fd) : -1;
  if (r < 0) {
    free(buf); free(s); close(fd);
    napi_throw_error(env, "ERR_NETLINK_UV", "netlink addon: uv_poll_init failed");
    return NULL;
  }
  s->poll.data = s;
  s->poll_inited = 1;
  /* The callback reference and async context first: if anything fails,
   * nothing is wrapped yet and everything is released right here. */
  if ((st = napi_create_reference(env, argv[1], 1, &s->callback)) != napi_ok ||
      (st = napi_create_string_utf8(env, "NetlinkSocket", NAPI_AUTO_LENGTH, &resname)) != napi_ok ||
      (st = napi_async_init(env, thisv, resname, &s->async_ctx)) != napi_ok ||
      (st = napi_wrap(env, thisv, s, finalize, NULL, &s->self)) != napi_ok) {
    s->js_released = 1;
    if (s->callback) napi_delete_reference(env, s->callback);
    if (s->async_ctx) napi_async_destroy(env, s->async_ctx);
    s->callback = NULL;
    s->async_ctx = NULL;
    s->self = NULL;
    s->finalized = 1; /* not wrapped: freed once the poll handle is closed */
    close_socket(s, 1);
    return throw_status(env, "NetlinkSocket constructor", st);
  }
  /* An open socket stays alive (like any libuv handle) until close(). */
  if ((st = napi_reference_ref(env, s->self, NULL)) != napi_ok) {
    close_socket(s, 0);
    return throw_status(env, "napi_reference_ref", st);
  }
  return thisv;
}

static napi_value m_bind(napi_env env, napi_callback_info info) {
  nlsock *s = get_self(env, info, NULL, NULL);
  if (!s) return NULL;
  if (s->fd < 0) return make_err(env, EBADF);
  struct sockaddr_nl sa;
  memset(&sa, 0, sizeof sa);
  sa.nl_family = AF_NETLINK;
  if (bind(s->fd, (struct sockaddr *)&sa, sizeof sa) < 0) return make_err(env, errno);
  socklen_t len = sizeof sa;
  if (getsockname(s->fd, (struct sockaddr *)&sa, &len) < 0) return make_err(env, errno);
  return make_num(env, sa.nl_pid);
}

static napi_value membership(napi_env env, napi_callback_info info, int opt) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t group;
  nlsock *s = get_self(env, info, &argc, argv);
  if (!s) return NULL;
  if (argc < 1) { napi_throw_type_error(env, "ERR_MISSING_ARGS", "group"); return NULL; }
  if (arg_int(env, argv[0], "group", &group) < 0) return NULL;
  if (s->fd < 0) return make_err(env, EBADF);
  if (setsockopt(s->fd, SOL_NETLINK, opt, &group, sizeof group) < 0) return make_err(env, errno);
  return make_num(env, 0);
}
static napi_value m_add_membership(napi_env env, napi_callback_info info) {
  return membership(env, info, NETLINK_ADD_MEMBERSHIP);
}
static napi_value m_drop_membership(napi_env env, napi_callback_info info) {
  return membership(env, info, NETLINK_DROP_MEMBERSHIP);
}

static napi_value m_setsockopt(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t level, opt, val;
  nlsock *s = get_self(env, info, &argc, argv);
  if (!s) return NULL;
  if (argc < 3) { napi_throw_type_error(env, "ERR_MISSING_ARGS", "setsockopt(level, option, value)"); return NULL; }
  if (arg_int(env, argv[0], "level", &level) < 0 || arg_int(env, argv[1], "option", &opt) < 0 ||
      arg_int(env, argv[2], "value", &val) < 0)
    return NULL;
  if (s->fd < 0) return make_err(env, EBADF);
  int v = val;
  if (setsockopt(s->fd, level, opt, &v, sizeof v) < 0) return make_err(env, errno);
  return make_num(env, 0);
}

static napi_value m_getsockopt(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t level, opt;
  nlsock *s = get_self(env, info, &argc, argv);
  if (!s) return NULL;
  if (argc < 2) { napi_throw_type_error(env, "ERR_MISSING_ARGS", "getsockopt(level, option)"); return NULL; }
  if (arg_int(env, argv[0], "level", &level) < 0 || arg_int(env, argv[1], "option", &opt) < 0) return NULL;
  if (s->fd < 0) return make_err(env, EBADF);
  int v = 0;
  socklen_t len = sizeof v;
  if (getsockopt(s->fd, level, opt, &v, &len) < 0) return make_err(env, errno);
  return make_num(env, v);
}

static napi_value m_send(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  bool isbuf = false;
  void *data = NULL;
  size_t len = 0;
  nlsock *s = get_self(env, info, &argc, argv);
  if (!s) return NULL;
  if (argc < 1) { napi_throw_type_error(env, "ERR_MISSING_ARGS", "send(buffer)"); return NULL; }
  CHECK(env, napi_is_buffer(env, argv[0], &isbuf));
  if (!isbuf) { napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "send: buffer must be a Buffer"); return NULL; }
  CHECK(env, napi_get_buffer_info(env, argv[0], &data, &len));
  if (s->fd < 0) return make_err(env, EBADF);
  struct sockaddr_nl to;
  memset(&to, 0, sizeof to);
  to.nl_family = AF_NETLINK; /* nl_pid 0: the kernel */
  ssize_t n;
  do {
    n = sendto(s->fd, data, len, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof to);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return make_err(env, errno);
  return make_num(env, (double)n);
}

static napi_value m_start(napi_env env, napi_callback_info info) {
  nlsock *s = get_self(env, info, NULL, NULL);
  if (!s) return NULL;
  if (s->fd < 0) return make_err(env, EBADF);
  s->want_read = 1;
  int r = update_poll(s);
  if (r < 0) { s->want_read = 0; return make_err(env, -r); }
  return make_num(env, 0);
}

static napi_value m_pause(napi_env env, napi_callback_info info) {
  nlsock *s = get_self(env, info, NULL, NULL);
  if (!s) return NULL;
  s->want_read = 0;
  update_poll(s);
  return make_num(env, 0);
}

static napi_value m_ref(napi_env env, napi_callback_info info) {
  nlsock *s = get_self(env, info, NULL, NULL);
  if (!s) return NULL;
  if (s->poll_inited && !s->poll_closing) uv_ref((uv_handle_t *)&s->poll);
  s->refed = 1;
  return undefined(env);
}

static napi_value m_unref(napi_env env, napi_callback_info info) {
  nlsock *s = get_self(env, info, NULL, NULL);
  if (!s) return NULL;
  if (s->poll_inited && !s->poll_closing) uv_unref((uv_handle_t *)&s->poll);
  s->refed = 0;
  return undefined(env);
}

static napi_value m_close(napi_env env, napi_callback_info info) {
  nlsock *s = get_self(env, info, NULL, NULL);
  if (!s) return NULL;
  close_socket(s, 0);
  return undefined(env);
}

static napi_value m_fd(napi_env env, napi_callback_info info) {
  nlsock *s = get_self(env, info, NULL, NULL);
  if (!s) return NULL;
  napi_value r;
  CHECK(env, napi_create_int32(env, s->fd, &r));
  return r;
}

static napi_value m_stats(napi_env env, napi_callback_info info) {
  nlsock *s = get_self(env, info, NULL, NULL);
  if (!s) return NULL;
  napi_value obj, v;
  CHECK(env, napi_create_object(env, &obj));
  CHECK(env, napi_create_double(env, s->received, &v));
  CHECK(env, napi_set_named_property(env, obj, "received", v));
  CHECK(env, napi_create_double(env, s->dropped, &v));
  CHECK(env, napi_set_named_property(env, obj, "dropped", v));
  CHECK(env, napi_create_double(env, s->truncated, &v));
  CHECK(env, napi_set_named_property(env, obj, "truncated", v));
  CHECK(env, napi_create_double(env, (double)s->buflen, &v));
  CHECK(env, napi_set_named_property(env, obj, "recvBufferBytes", v));
  return obj;
}

/* ---- module ------------------------------------------------------------------- */

static napi_value set_int(napi_env env, napi_value obj, const char *name, int v) {
  napi_value n;
  CHECK(env, napi_create_int32(env, v, &n));
  CHECK(env, napi_set_named_property(env, obj, name, n));
  return obj;
}

static napi_value m_errno_name(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], r;
  int32_t e;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || arg_int(env, argv[0], "errno", &e) < 0) return NULL;
  if (e < 0) e = -e;
  CHECK(env, napi_create_string_utf8(env, errno_name(e), NAPI_AUTO_LENGTH, &r));
  return r;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
    { "bind", NULL, m_bind, NULL, NULL, NULL, napi_default_method, NULL },
    { "addMembership", NULL, m_add_membership, NULL, NULL, NULL, napi_default_method, NULL },
    { "dropMembership", NULL, m_drop_membership, NULL, NULL, NULL, napi_default_method, NULL },
    { "setsockopt", NULL, m_setsockopt, NULL, NULL, NULL, napi_default_method, NULL },
    { "getsockopt", NULL, m_getsockopt, NULL, NULL, NULL, napi_default_method, NULL },
    { "send", NULL, m_send, NULL, NULL, NULL, napi_default_method, NULL },
    { "start", NULL, m_start, NULL, NULL, NULL, napi_default_method, NULL },
    { "pause", NULL, m_pause, NULL, NULL, NULL, napi_default_method, NULL },
    { "ref", NULL, m_ref, NULL, NULL, NULL, napi_default_method, NULL },
    { "unref", NULL, m_unref, NULL, NULL, NULL, napi_default_method, NULL },
    { "close", NULL, m_close, NULL, NULL, NULL, napi_default_method, NULL },
    { "fd", NULL, m_fd, NULL, NULL, NULL, napi_default_method, NULL },
    { "stats", NULL, m_stats, NULL, NULL, NULL, napi_default_method, NULL },
  };
  napi_value cls, consts, fn;
  CHECK(env, napi_define_class(env, "NetlinkSocket", NAPI_AUTO_LENGTH, m_constructor, NULL,
                               sizeof methods / sizeof methods[0], methods, &cls));
  CHECK(env, napi_set_named_property(env, exports, "NetlinkSocket", cls));
  CHECK(env, napi_create_function(env, "errnoName", NAPI_AUTO_LENGTH, m_errno_name, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "errnoName", fn));
  CHECK(env, napi_create_object(env, &consts));
  if (!set_int(env, consts, "SOL_SOCKET", SOL_SOCKET)) return NULL;
  if (!set_int(env, consts, "SO_RCVBUF", SO_RCVBUF)) return NULL;
  if (!set_int(env, consts, "SO_RCVBUFFORCE", SO_RCVBUFFORCE)) return NULL;
  if (!set_int(env, consts, "SO_SNDBUF", SO_SNDBUF)) return NULL;
  if (!set_int(env, consts, "SOL_NETLINK", SOL_NETLINK)) return NULL;
  if (!set_int(env, consts, "NETLINK_ADD_MEMBERSHIP", NETLINK_ADD_MEMBERSHIP)) return NULL;
  if (!set_int(env, consts, "NETLINK_DROP_MEMBERSHIP", NETLINK_DROP_MEMBERSHIP)) return NULL;
  if (!set_int(env, consts, "NETLINK_NO_ENOBUFS", NETLINK_NO_ENOBUFS)) return NULL;
  if (!set_int(env, consts, "NETLINK_CAP_ACK", NETLINK_CAP_ACK)) return NULL;
  if (!set_int(env, consts, "NETLINK_EXT_ACK", NETLINK_EXT_ACK)) return NULL;
  if (!set_int(env, consts, "NETLINK_GET_STRICT_CHK", NETLINK_GET_STRICT_CHK)) return NULL;
  if (!set_int(env, consts, "NETLINK_ROUTE", NETLINK_ROUTE)) return NULL;
  if (!set_int(env, consts, "MAX_DGRAMS_PER_WAKEUP", MAX_DGRAMS_PER_WAKEUP)) return NULL;
  CHECK(env, napi_set_named_property(env, exports, "constants", consts));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
