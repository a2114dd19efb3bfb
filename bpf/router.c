/* SPDX-License-Identifier: MIT */
/*
 * router: attached to the router link. Takes frames the router tagged with
 * a NIC's VID, removes exactly that one tag and sends the frame out of the
 * NIC router_egress maps the VID to: a VID the agent gave to no NIC is
 * dropped. Every drop is decided before the frame is modified, and counted
 * (globally by reason, and on the router link's slot of link_stats); frames
 * sent are counted on the NIC's slot (link_stats[VID]).
 */
#include "common.h"

SEC("xdp")
int router(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = data_end - data;
	struct link_counters *rc, *lc;
	__u32 *target;
	int proto, tci;
	__u32 vid;
	long ret;

	rc = link_slot(ROUTER_SLOT);
	if (rc) {
		rc->rx_packets += 1;
		rc->rx_bytes += len;
	}
	proto = eth_proto(data, data_end);
	if (proto < 0)
		return drop(rc, CNT_ROUTER_DROP_SHORT, DROP_SHORT);
	if (!is_vlan_tpid(proto))
		return drop(rc, CNT_ROUTER_DROP_UNTAGGED, DROP_UNTAGGED);
	tci = vlan_tci(data, data_end);
	if (tci < 0)
		return drop(rc, CNT_ROUTER_DROP_SHORT, DROP_SHORT);
	/* physical never sets priority or DEI: such a tag was not meant for us. */
	if (tci & VLAN_PCP_DEI_MASK)
		return drop(rc, CNT_ROUTER_DROP_PCP_DEI, DROP_PCP_DEI);
	vid = tci & VLAN_VID_MASK;
	/*
	 * Miss (a VID the agent gave to no NIC; 0 and 4095 never are) -> the
	 * low flag bits, XDP_DROP. The agent never maps a VID to the router
	 * link, but a frame looping back into it would storm: check the target
	 * here too (a devmap lookup yields the entry's ifindex).
	 */
	target = bpf_map_lookup_elem(&router_egress, &vid);
	if (!target)
		return drop(rc, CNT_ROUTER_DROP_VID_UNKNOWN, DROP_VID_UNKNOWN);
	if (*target == ctx->ingress_ifindex)
		return drop(rc, CNT_ROUTER_DROP_VID_SELF, DROP_VID_SELF);
	ret = bpf_redirect_map(&router_egress, vid, XDP_DROP);
	if (ret != XDP_REDIRECT) /* removed between the two lookups */
		return drop(rc, CNT_ROUTER_DROP_VID_UNKNOWN, DROP_VID_UNKNOWN);
	if (vlan_pop(ctx))
		return drop(rc, CNT_ROUTER_DROP_HEADROOM, DROP_HEADROOM);
	count(CNT_ROUTER_FORWARDED);
	lc = link_slot(vid);
	if (lc) {
		lc->tx_packets += 1;
		lc->tx_bytes += len - VLAN_HDR_LEN;
	}
	return XDP_REDIRECT;
}

char _license[] SEC("license") = "GPL";
