/* SPDX-License-Identifier: MIT */
/*
 * physical: attached to each physical NIC. Tags every frame with one 802.1Q
 * header whose VID is the NIC's entry in nic_vid (by default its ifindex;
 * the agent decides) and hands it to the router link (router_iface entry 0).
 * Every frame is counted on the NIC (link_stats[VID]); every drop is
 * explicit and counted by reason.
 */
#include "common.h"

SEC("xdp")
int physical(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 ifindex = ctx->ingress_ifindex;
	__u64 len = data_end - data;
	struct link_counters *lc, *rc;
	__u32 *vidp, vid;
	long ret;

	/* No VID, no tag: a NIC the agent has not (or no longer) given a VID. */
	vidp = bpf_map_lookup_elem(&nic_vid, &ifindex);
	if (!vidp)
		return drop(NULL, CNT_PHYSICAL_DROP_NO_VID, DROP__MAX);
	vid = *vidp;
	/* The agent never writes 0 or 4095+, but a wrong tag would reach the wrong NIC: check. */
	if (vid < VID_FIRST || vid > VID_LAST)
		return drop(NULL, CNT_PHYSICAL_DROP_NO_VID, DROP__MAX);

	lc = link_slot(vid);
	if (lc) {
		lc->rx_packets += 1;
		lc->rx_bytes += len;
	}
	if (eth_proto(data, data_end) < 0)
		return drop(lc, CNT_PHYSICAL_DROP_SHORT, DROP_SHORT);
	/*
	 * Choose the target before touching the frame. On a miss
	 * bpf_redirect_map returns the low bits of its flags: with XDP_DROP
	 * there we can tell "no router link yet" from success (XDP_REDIRECT)
	 * instead of silently returning XDP_ABORTED as flags 0 would.
	 */
	ret = bpf_redirect_map(&router_iface, 0, XDP_DROP);
	if (ret != XDP_REDIRECT)
		return drop(lc, CNT_PHYSICAL_DROP_NO_ROUTER, DROP_NO_ROUTER);
	if (vlan_push(ctx, (__u16)vid))
		return drop(lc, CNT_PHYSICAL_DROP_HEADROOM, DROP_HEADROOM);
	count(CNT_PHYSICAL_FORWARDED);
	rc = link_slot(ROUTER_SLOT);
	if (rc) {
		rc->tx_packets += 1;
		rc->tx_bytes += len + VLAN_HDR_LEN;
	}
	return XDP_REDIRECT;
}

char _license[] SEC("license") = "GPL";
