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
#define VID_MAX 4095         /* 12-bit VIDs: link_stats has a slot per VID; the agent gives NICs 1..4094 (agent/core/vid.ts) */

/*
 * Counter indexes into xdp_stats (global, per reason). Append only: the agent
 * reads them by position and names them with COUNTER_NAMES
 * (agent/bpf/forwarder.ts). The map keeps its size (12) so that pins of the
 * earlier layout stay compatible; index 2 used to be "ifindex outside
 * 1..4095" and is now its generalisation, "the NIC has no VID".
 */
enum xdp_counter {
	CNT_PHYSICAL_FORWARDED = 0,   /* tagged and redirected to the router link */
	CNT_PHYSICAL_DROP_SHORT,      /* shorter than an Ethernet header */
	CNT_PHYSICAL_DROP_NO_VID,     /* ingress NIC has no entry in nic_vid */
	CNT_PHYSICAL_DROP_NO_ROUTER,  /* router_iface has no entry (yet) */
	CNT_PHYSICAL_DROP_HEADROOM,   /* bpf_xdp_adjust_head refused to grow the frame */
	CNT_ROUTER_FORWARDED,         /* untagged and redirected to an allowed NIC */
	CNT_ROUTER_DROP_SHORT,        /* shorter than an Ethernet header, or tagged but no room for the tag */
	CNT_ROUTER_DROP_UNTAGGED,     /* outer ethertype is neither 0x8100 nor 0x88a8 */
	CNT_ROUTER_DROP_PCP_DEI,      /* TCI has PCP or DEI bits: not what physical sends */
	CNT_ROUTER_DROP_VID_SELF,     /* VID leads back to the link the frame came in on */
	CNT_ROUTER_DROP_VID_UNKNOWN,  /* VID is not in router_egress (VID 0 and 4095 included) */
	CNT_ROUTER_DROP_HEADROOM,     /* bpf_xdp_adjust_head refused to shrink the frame */
	CNT__MAX,
};

/*
 * Per-link drop reasons in struct link_counters.drop (mirrored by
 * LINK_DROP_NAMES in agent/bpf/forwarder.ts). A link only ever sees the
 * reasons of its own program: a NIC short/no_router/headroom, the router
 * link short/untagged/pcp_dei/vid_self/vid_unknown/headroom.
 */
enum link_drop {
	DROP_SHORT = 0,
	DROP_NO_ROUTER,
	DROP_HEADROOM,
	DROP_UNTAGGED,
	DROP_PCP_DEI,
	DROP_VID_SELF,
	DROP_VID_UNKNOWN,
	DROP__MAX,
};

/*
 * One link's counters, per CPU. rx: frames the link's own program saw (every
 * one, dropped or not; bytes as received). tx: frames the other program
 * redirected to the link (bytes as they leave: untagged for a NIC, tagged
 * for the router link). 96 bytes.
 */
struct link_counters {
	__u64 rx_packets;
	__u64 rx_bytes;
	__u64 tx_packets;
	__u64 tx_bytes;
	__u64 drop[DROP__MAX + 1]; /* +1: spare, keeps the size a multiple of 16 */
};

/* Slot of the router link in link_stats; NICs use their VID (1..4094), which is never 0. */
#define ROUTER_SLOT 0
#define VID_FIRST 1
#define VID_LAST 4094        /* 0 and 4095 are reserved by 802.1Q */

/* Entry 0: the router link's ifindex (SPEC: DEVMAP, int -> int, 1 entry). */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__type(key, int);
	__type(value, int);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} router_iface SEC(".maps");

/*
 * VID -> NIC ifindex, for `router`: the redirect key is the VID, so one
 * bpf_redirect_map both translates and allowlists (a VID missing here is
 * dropped, which closes the published design's "any ifindex the router
 * names" hole). Filled by the agent together with nic_vid. The name and
 * shape are those of the earlier ifindex -> ifindex allowlist: with the
 * default VID = ifindex its entries mean the same, so old pins carry over.
 */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 4096);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} router_egress SEC(".maps");

/* NIC ifindex -> VID, for `physical`. A NIC missing here has no VID: its frames are dropped. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 4096);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nic_vid SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, CNT__MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xdp_stats SEC(".maps");

/*
 * Per-link counters, indexed by VID (a NIC) or ROUTER_SLOT (the router
 * link). An array, not a hash keyed by ifindex: its lookup is a few inlined
 * instructions, and both programs know the VID anyway. The agent zeroes a
 * slot when it gives the VID (or the router slot) to a different link.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct link_counters);
	__uint(max_entries, VID_MAX + 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} link_stats SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&xdp_stats, &idx);

	if (v)
		*v += 1; /* per-CPU slot: no other writer, no atomics needed */
}

static __always_inline struct link_counters *link_slot(__u32 slot)
{
#ifdef NETAGENT_NO_LINK_STATS
	/* Only for bench/bpf/nolinkstats_*.c, which measure what the counters cost. */
	return NULL;
#else
	return bpf_map_lookup_elem(&link_stats, &slot);
#endif
}

/* Counts a drop both globally (xdp_stats) and on the link (lc may be NULL). */
static __always_inline int drop(struct link_counters *lc, __u32 cnt, __u32 reason)
{
	count(cnt);
	if (lc && reason < DROP__MAX)
		lc->drop[reason] += 1;
	return XDP_DROP;
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
