/* SPDX-License-Identifier: MIT */
/*
 * Shared by physical.c and router.c: the maps both programs declare (so the
 * pins live as long as either program does), the counter indexes (mirrored,
 * in order, by COUNTER_NAMES in agent/bpf/forwarder.ts), and bounds-checked
 * Ethernet / 802.1Q helpers.
 *
 * Every packet access is checked against data_end before it happens, and
 * every helper that moves data (bpf_xdp_adjust_head) is followed by reloading
 * data/data_end: the verifier forgets packet bounds across such calls.
 */
#ifndef NETAGENT_COMMON_H
#define NETAGENT_COMMON_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_HDR_LEN 14       /* dst(6) src(6) ethertype(2) */
#define VLAN_HDR_LEN 4       /* TPID(2) TCI(2) */
#define MACS_LEN 12          /* dst + src: what moves when a tag is pushed or popped */
#define VLAN_VID_MASK 0x0fff
#define VLAN_PCP_DEI_MASK 0xf000
#define VID_MAX 4095         /* VIDs and thus usable ifindexes are 1..4095 */

/*
 * Counter indexes into xdp_stats. Append only: the agent reads them by
 * position and names them with COUNTER_NAMES (agent/bpf/forwarder.ts).
 */
enum xdp_counter {
	CNT_PHYSICAL_FORWARDED = 0,   /* tagged and redirected to the router link */
	CNT_PHYSICAL_DROP_SHORT,      /* shorter than an Ethernet header */
	CNT_PHYSICAL_DROP_IFINDEX,    /* ingress ifindex outside 1..4095: not a VID */
	CNT_PHYSICAL_DROP_NO_ROUTER,  /* router_iface has no entry (yet) */
	CNT_PHYSICAL_DROP_HEADROOM,   /* bpf_xdp_adjust_head refused to grow the frame */
	CNT_ROUTER_FORWARDED,         /* untagged and redirected to an allowed NIC */
	CNT_ROUTER_DROP_SHORT,        /* shorter than an Ethernet header, or tagged but no room for the tag */
	CNT_ROUTER_DROP_UNTAGGED,     /* outer ethertype is neither 0x8100 nor 0x88a8 */
	CNT_ROUTER_DROP_PCP_DEI,      /* TCI has PCP or DEI bits: not what physical sends */
	CNT_ROUTER_DROP_VID_SELF,     /* VID names the router link itself */
	CNT_ROUTER_DROP_VID_UNKNOWN,  /* VID is not in router_egress (VID 0 included) */
	CNT_ROUTER_DROP_HEADROOM,     /* bpf_xdp_adjust_head refused to shrink the frame */
	CNT__MAX,
};

/* Entry 0: the router link's ifindex (SPEC: DEVMAP, int -> int, 1 entry). */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__type(key, int);
	__type(value, int);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} router_iface SEC(".maps");

/*
 * The NICs `router` may send to: ifindex -> ifindex, filled by the agent with
 * the links it attached `physical` to. A VID missing here is dropped, which
 * closes the published design's "any ifindex the router names" hole.
 */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 4096);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} router_egress SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, CNT__MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdp_stats SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&xdp_stats, &idx);

	if (v)
		*v += 1; /* per-CPU slot: no other writer, no atomics needed */
}

/* Outer ethertype if the frame holds a whole Ethernet header, else -1. */
static __always_inline int eth_proto(void *data, void *data_end)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return -1;
	return bpf_ntohs(eth->h_proto);
}

static __always_inline int is_vlan_tpid(int proto)
{
	return proto == ETH_P_8021Q || proto == ETH_P_8021AD;
}

/*
 * TCI of the outer tag, or -1 when the frame is too short to hold
 * dst + src + TPID + TCI + inner ethertype (18 bytes).
 */
static __always_inline int vlan_tci(void *data, void *data_end)
{
	__u8 *p = data;

	if ((void *)(p + ETH_HDR_LEN + VLAN_HDR_LEN) > data_end)
		return -1;
	return ((int)p[MACS_LEN + 2] << 8) | p[MACS_LEN + 3];
}

/*
 * Inserts TPID 0x8100 / tci after the MAC addresses. Returns 0, or -1 when
 * the headroom cannot grow (frame untouched then) or bounds fail afterwards.
 */
static __always_inline int vlan_push(struct xdp_md *ctx, __u16 tci)
{
	void *data, *data_end;
	__u8 macs[MACS_LEN];
	__u8 *p;

	/* Copy the MACs out first: source and destination overlap after the move. */
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + ETH_HDR_LEN > data_end)
		return -1;
	__builtin_memcpy(macs, data, MACS_LEN);

	if (bpf_xdp_adjust_head(ctx, -VLAN_HDR_LEN))
		return -1;

	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	p = data;
	if ((void *)(p + ETH_HDR_LEN + VLAN_HDR_LEN) > data_end)
		return -1;
	__builtin_memcpy(p, macs, MACS_LEN);
	p[MACS_LEN + 0] = ETH_P_8021Q >> 8;
	p[MACS_LEN + 1] = ETH_P_8021Q & 0xff;
	p[MACS_LEN + 2] = tci >> 8;
	p[MACS_LEN + 3] = tci & 0xff;
	/* The old ethertype is now the inner one at offset 16: nothing to write. */
	return 0;
}

/*
 * Removes the outer tag (caller checked it is there). Moves the MACs 4 bytes
 * forward, then trims the front. Returns 0, or -1 if the trim failed (the
 * frame is then damaged and must be dropped).
 */
static __always_inline int vlan_pop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 macs[MACS_LEN];
	__u8 *p = data;

	if ((void *)(p + ETH_HDR_LEN + VLAN_HDR_LEN) > data_end)
		return -1;
	__builtin_memcpy(macs, p, MACS_LEN);
	__builtin_memcpy(p + VLAN_HDR_LEN, macs, MACS_LEN);
	if (bpf_xdp_adjust_head(ctx, VLAN_HDR_LEN))
		return -1;
	return 0;
}

#endif /* NETAGENT_COMMON_H */
