/* SPDX-License-Identifier: MIT */
/*
 * router: attached to the router link. Takes frames the router tagged with
 * a VID naming a physical NIC's ifindex, removes exactly that one tag and
 * sends the frame out of that NIC, but only if the agent allowed the NIC
 * (router_egress). Every drop is decided before the frame is modified, and
 * counted.
 */
#include "common.h"

SEC("xdp")
int router(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	int proto, tci;
	__u32 vid;
	long ret;

	proto = eth_proto(data, data_end);
	if (proto < 0) {
		count(CNT_ROUTER_DROP_SHORT);
		return XDP_DROP;
	}
	if (!is_vlan_tpid(proto)) {
		count(CNT_ROUTER_DROP_UNTAGGED);
		return XDP_DROP;
	}
	tci = vlan_tci(data, data_end);
	if (tci < 0) {
		count(CNT_ROUTER_DROP_SHORT);
		return XDP_DROP;
	}
	/* physical never sets priority or DEI: such a tag was not meant for us. */
	if (tci & VLAN_PCP_DEI_MASK) {
		count(CNT_ROUTER_DROP_PCP_DEI);
		return XDP_DROP;
	}
	vid = tci & VLAN_VID_MASK;
	if (vid == ctx->ingress_ifindex) {
		count(CNT_ROUTER_DROP_VID_SELF);
		return XDP_DROP;
	}
	/* Miss (VID not an allowed NIC, VID 0 included) -> low flag bits = XDP_DROP. */
	ret = bpf_redirect_map(&router_egress, vid, XDP_DROP);
	if (ret != XDP_REDIRECT) {
		count(CNT_ROUTER_DROP_VID_UNKNOWN);
		return XDP_DROP;
	}
	if (vlan_pop(ctx)) {
		count(CNT_ROUTER_DROP_HEADROOM);
		return XDP_DROP;
	}
	count(CNT_ROUTER_FORWARDED);
	return XDP_REDIRECT;
}

char _license[] SEC("license") = "GPL";
