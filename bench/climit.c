// SPDX-License-Identifier: MIT
/*
 * climit: the physical limit of the control plane, for the benchmark.
 *
 * A minimal agent that does only the system calls a new link needs, so that
 * bench/ can say how far netagent (and the published script) are from what
 * the kernel allows. Not a product: no config, no status, no retries, no
 * cleanup, no logging; it handles links that appear and nothing else.
 *
 *   climit xdp-forwarder PINDIR BPFDIR [NOTIFY_FD]
 *   climit router-routed [NOTIFY_FD]
 *
 * xdp-forwarder: loads BPFDIR/physical.o and BPFDIR/router.o (netagent's
 * objects) once at start, with the maps pinned in PINDIR and pins that exist
 * reused explicitly (bpf_map__reuse_fd: libbpf 1.1.2 rejects a pinned DEVMAP
 * as incompatible), as agent/bpf/forwarder.ts does. Per new link:
 *   router link (MAC 02:01:...): bpf(MAP_UPDATE router_iface[0] = ifindex),
 *     then one RTM_NEWLINK: up + promisc + IFLA_XDP (router, skb mode);
 *   any other Ethernet link: bpf(MAP_UPDATE router_egress[ifindex]),
 *     then one RTM_NEWLINK: up + IFLA_XDP (physical, skb mode).
 * router-routed, per new link with MAC 02:01:XX:XX:AA:BB: RTM_NEWADDR
 *   169.254.0.1/32 (proto 199), RTM_NEWLINK up, RTM_NEWROUTE
 *   100.64.AA.BB/32 dev LINK scope link proto 199 (as netagent does).
 *
 * Pipelined: every link event waiting on the monitor socket is read
 * (non-blocking drain), the requests for all new links go out in as few
 * sendmsg calls as fit, and only then are the ACKs read. The kernel runs the
 * messages of one send in order, so "up" lands before the route that needs it.
 *
 * Readiness: once the objects are loaded and the links present at start are
 * configured, one newline on NOTIFY_FD (like netagent's --notify-fd).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <net/if_arp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#define ROUTE_PROTO 199
#define MAX_IFINDEX (1 << 20)
#define SEND_CHUNK (48 * 1024)
#define RCVBUF (64 << 20)

enum profile { XDP_FORWARDER, ROUTER_ROUTED };

static enum profile profile;
static int mon, ctl;
static int prog_physical = -1, prog_router = -1, map_router_iface = -1, map_egress = -1;
static unsigned char *seen; /* per ifindex: configured already */
static char *out; /* pending requests */
static size_t out_len, out_cap;
static unsigned seq, outstanding;
static unsigned long failures;

static void die(const char *what)
{
	fprintf(stderr, "climit: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int nl_socket(unsigned groups)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	int sz = RCVBUF;
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = groups };

	if (fd < 0)
		die("socket(NETLINK_ROUTE)");
	/* Bursts of 1000 links: events and ACKs must not overrun the buffers. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)))
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	sz = 4 << 20;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)))
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("bind(NETLINK_ROUTE)");
	return fd;
}

/* ------------------------------------------------------------ requests */

static struct nlmsghdr *msg_begin(unsigned short type, unsigned short flags, const void *fixed, size_t len)
{
	struct nlmsghdr *h;

	if (out_len + 512 > out_cap) {
		out_cap = out_cap ? out_cap * 2 : 1 << 16;
		out = realloc(out, out_cap);
		if (!out)
			die("realloc");
	}
	h = (struct nlmsghdr *)(out + out_len);
	h->nlmsg_len = NLMSG_LENGTH(len);
	h->nlmsg_type = type;
	h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	h->nlmsg_seq = ++seq;
	h->nlmsg_pid = 0;
	memcpy(NLMSG_DATA(h), fixed, len);
	memset((char *)NLMSG_DATA(h) + len, 0, NLMSG_ALIGN(len) - len);
	h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len);
	return h;
}

static struct rtattr *attr(struct nlmsghdr *h, unsigned short type, const void *data, size_t len)
{
	struct rtattr *a = (struct rtattr *)((char *)h + NLMSG_ALIGN(h->nlmsg_len));

	a->rta_type = type;
	a->rta_len = RTA_LENGTH(len);
	if (len)
		memcpy(RTA_DATA(a), data, len);
	memset((char *)RTA_DATA(a) + len, 0, RTA_ALIGN(a->rta_len) - a->rta_len);
	h->nlmsg_len = NLMSG_ALIGN(h->nlmsg_len) + RTA_ALIGN(a->rta_len);
	return a;
}

static void msg_end(struct nlmsghdr *h)
{
	out_len += NLMSG_ALIGN(h->nlmsg_len);
	outstanding++;
}

/* RTM_NEWLINK on an existing link: flags, and optionally an XDP program (skb mode). */
static void set_link(int ifindex, unsigned flags, int prog_fd)
{
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = ifindex, .ifi_flags = flags, .ifi_change = flags };
	struct nlmsghdr *h = msg_begin(RTM_NEWLINK, 0, &ifi, sizeof(ifi));

	if (prog_fd >= 0) {
		struct rtattr *nest = attr(h, IFLA_XDP | NLA_F_NESTED, NULL, 0);
		__u32 xflags = XDP_FLAGS_SKB_MODE;

		attr(h, IFLA_XDP_FD, &prog_fd, sizeof(prog_fd));
		attr(h, IFLA_XDP_FLAGS, &xflags, sizeof(xflags));
		nest->rta_len = (char *)h + h->nlmsg_len - (char *)nest;
	}
	msg_end(h);
}

static void configure_routed(int ifindex, const unsigned char *mac)
{
	struct ifaddrmsg ifa = { .ifa_family = AF_INET, .ifa_prefixlen = 32, .ifa_index = ifindex };
	struct rtmsg rtm = {
		.rtm_family = AF_INET, .rtm_dst_len = 32, .rtm_table = RT_TABLE_MAIN,
		.rtm_protocol = ROUTE_PROTO, .rtm_scope = RT_SCOPE_LINK, .rtm_type = RTN_UNICAST,
	};
	unsigned char local[4] = { 169, 254, 0, 1 }, dst[4] = { 100, 64, mac[4], mac[5] }, proto = ROUTE_PROTO;
	__u32 oif = ifindex;
	struct nlmsghdr *h;

	h = msg_begin(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, &ifa, sizeof(ifa));
	attr(h, IFA_LOCAL, local, 4);
	attr(h, IFA_ADDRESS, local, 4);
	attr(h, IFA_PROTO, &proto, 1);
	msg_end(h);
	set_link(ifindex, IFF_UP, -1);
	h = msg_begin(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &rtm, sizeof(rtm));
	attr(h, RTA_DST, dst, 4);
	attr(h, RTA_OIF, &oif, 4);
	msg_end(h);
}

static void configure_xdp(int ifindex, const unsigned char *mac)
{
	__u32 key, val = ifindex;

	if (mac[0] == 0x02 && mac[1] == 0x01) {
		key = 0;
		if (bpf_map_update_elem(map_router_iface, &key, &val, BPF_ANY))
			failures++;
		set_link(ifindex, IFF_UP | IFF_PROMISC, prog_router);
	} else {
		key = ifindex;
		if (bpf_map_update_elem(map_egress, &key, &val, BPF_ANY))
			failures++;
		set_link(ifindex, IFF_UP, prog_physical);
	}
}

/* Sends everything pending, then reads one ACK per request. */
static void flush(void)
{
	static char buf[1 << 16];
	size_t off = 0;

	while (off < out_len) {
		size_t n = 0;

		/* Whole messages, at most SEND_CHUNK bytes per sendmsg. */
		while (off + n < out_len) {
			struct nlmsghdr *h = (struct nlmsghdr *)(out + off + n);
			if (n && n + h->nlmsg_len > SEND_CHUNK)
				break;
			n += h->nlmsg_len;
		}
		if (send(ctl, out + off, n, 0) < 0)
			die("send(netlink request)");
		off += n;
	}
	out_len = 0;
	while (outstanding) {
		ssize_t n = recv(ctl, buf, sizeof(buf), 0);
		struct nlmsghdr *h;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("recv(netlink ACK)");
		}
		for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type != NLMSG_ERROR)
				continue;
			if (((struct nlmsgerr *)NLMSG_DATA(h))->error) {
				failures++;
				fprintf(stderr, "climit: request %u failed: %s\n", h->nlmsg_seq, strerror(-((struct nlmsgerr *)NLMSG_DATA(h))->error));
			}
			outstanding--;
		}
	}
}

/* ------------------------------------------------------------ link events */

static void on_link(struct nlmsghdr *h)
{
	struct ifinfomsg *ifi = NLMSG_DATA(h);
	int len = IFLA_PAYLOAD(h);
	const unsigned char *mac = NULL;
	struct rtattr *a;

	if (ifi->ifi_index <= 0 || ifi->ifi_index >= MAX_IFINDEX)
		return;
	if (h->nlmsg_type == RTM_DELLINK) {
		seen[ifi->ifi_index] = 0;
		return;
	}
	if (seen[ifi->ifi_index] || ifi->ifi_type != ARPHRD_ETHER)
		return;
	for (a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len))
		if (a->rta_type == IFLA_ADDRESS && RTA_PAYLOAD(a) == 6)
			mac = RTA_DATA(a);
	if (!mac)
		return;
	if (profile == XDP_FORWARDER) {
		configure_xdp(ifi->ifi_index, mac);
	} else {
		if (mac[0] != 0x02 || mac[1] != 0x01)
			return; /* not a client link */
		configure_routed(ifi->ifi_index, mac);
	}
	seen[ifi->ifi_index] = 1;
}

/* Handles every message in buf; returns 1 at NLMSG_DONE (end of a dump). */
static int on_messages(char *buf, ssize_t n)
{
	struct nlmsghdr *h;

	for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
		if (h->nlmsg_type == NLMSG_DONE)
			return 1;
		if (h->nlmsg_type == RTM_NEWLINK || h->nlmsg_type == RTM_DELLINK)
			on_link(h);
	}
	return 0;
}

/* The links present at start: one RTM_GETLINK dump on the control socket. */
static void configure_present(void)
{
	static char buf[1 << 16];
	struct {
		struct nlmsghdr h;
		struct ifinfomsg ifi;
	} req = {
		.h = { .nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = ++seq },
		.ifi = { .ifi_family = AF_UNSPEC },
	};

	if (send(ctl, &req, sizeof(req), 0) < 0)
		die("send(RTM_GETLINK dump)");
	for (;;) {
		ssize_t n = recv(ctl, buf, sizeof(buf), 0);
		if (n < 0)
			die("recv(RTM_GETLINK dump)");
		if (on_messages(buf, n))
			break;
	}
	flush();
}

/* ------------------------------------------------------------ BPF */

/* Opens and loads one object, reusing the maps already pinned in pin_dir. */
static struct bpf_object *load_object(const char *path, const char *pin_dir)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = pin_dir);
	struct bpf_object *obj = bpf_object__open_file(path, &opts);
	struct bpf_map *map;

	if (!obj)
		die(path);
	bpf_object__for_each_map(map, obj) {
		const char *pin = bpf_map__pin_path(map);
		int fd;

		if (!pin)
			continue;
		fd = bpf_obj_get(pin);
		if (fd < 0)
			continue; /* no pin yet: libbpf creates and pins it */
		if (bpf_map__reuse_fd(map, fd))
			die("bpf_map__reuse_fd");
		bpf_map__set_pin_path(map, NULL);
		close(fd);
	}
	if (bpf_object__load(obj))
		die(path);
	return obj;
}

static int prog_fd(struct bpf_object *obj, const char *name)
{
	struct bpf_program *p = bpf_object__find_program_by_name(obj, name);

	if (!p)
		die(name);
	return bpf_program__fd(p);
}

static int map_fd(struct bpf_object *obj, const char *name)
{
	struct bpf_map *m = bpf_object__find_map_by_name(obj, name);

	if (!m)
		die(name);
	return bpf_map__fd(m);
}

static void load_bpf(const char *pin_dir, const char *bpf_dir)
{
	char path[4096];
	struct bpf_object *phys, *rout;

	snprintf(path, sizeof(path), "%s/physical.o", bpf_dir);
	phys = load_object(path, pin_dir);
	snprintf(path, sizeof(path), "%s/router.o", bpf_dir);
	rout = load_object(path, pin_dir);
	prog_physical = prog_fd(phys, "physical");
	prog_router = prog_fd(rout, "router");
	map_router_iface = map_fd(phys, "router_iface");
	map_egress = map_fd(phys, "router_egress");
}

int main(int argc, char **argv)
{
	static char buf[1 << 20];
	int notify = -1;

	if (argc >= 4 && !strcmp(argv[1], "xdp-forwarder")) {
		profile = XDP_FORWARDER;
		load_bpf(argv[2], argv[3]);
		if (argc > 4)
			notify = atoi(argv[4]);
	} else if (argc >= 2 && !strcmp(argv[1], "router-routed")) {
		profile = ROUTER_ROUTED;
		if (argc > 2)
			notify = atoi(argv[2]);
	} else {
		fprintf(stderr, "usage: climit xdp-forwarder PINDIR BPFDIR [NOTIFY_FD] | climit router-routed [NOTIFY_FD]\n");
		return 2;
	}
	seen = calloc(MAX_IFINDEX, 1);
	if (!seen)
		die("calloc");
	/* Subscribe before the dump, so no link falls between the two. */
	mon = nl_socket(RTMGRP_LINK);
	ctl = nl_socket(0);
	configure_present();
	if (notify >= 0 && write(notify, "\n", 1) != 1)
		die("write(notify fd)");
	for (;;) {
		ssize_t n = recv(mon, buf, sizeof(buf), 0);
		int any = 0;

		for (;;) {
			if (n < 0) {
				if (errno == EAGAIN)
					break;
				if (errno == ENOBUFS) {
					/* Events lost: a real agent would dump again; count it. */
					failures++;
				} else if (errno != EINTR) {
					die("recv(link events)");
				}
			} else {
				on_messages(buf, n);
				any = 1;
			}
			n = recv(mon, buf, sizeof(buf), MSG_DONTWAIT);
		}
		if (any && out_len)
			flush();
	}
}
