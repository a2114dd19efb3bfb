/* SPDX-License-Identifier: MIT */
/*
 * physical: attached to each physical NIC. Tags every frame with one 802.1Q
 * header whose VID is the NIC's ifindex and hands it to the router link
 * (router_iface entry 0). Every drop is explicit and counted.
 */
#include "common.h"

SEC("xdp")
int physical(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 ifindex = ctx->ingress_ifindex;
	long ret;

	if (eth_proto(data, data_end) < 0) {
		count(CNT_PHYSICAL_DROP_SHORT);
		return XDP_DROP;
	}
	/* The VID field is 12 bits and 0 / 4095 are reserved: no tag can name such a NIC. */
	if (ifindex < 1 || ifindex > VID_MAX) {
		count(CNT_PHYSICAL_DROP_IFINDEX);
		return XDP_DROP;
	}
	/*
	 * Choose the target before touching the frame. On a miss
	 * bpf_redirect_map returns the low bits of its flags: with XDP_DROP
	 * there we can tell "no router link yet" from success (XDP_REDIRECT)
	 * instead of silently returning XDP_ABORTED as flags 0 would.
	 */
	ret = bpf_redirect_map(&router_iface, 0, XDP_DROP);
	if (ret != XDP_REDIRECT) {
		count(CNT_PHYSICAL_DROP_NO_ROUTER);
		return XDP_DROP;
	}
	if (vlan_push(ctx, (__u16)ifindex)) {
		count(CNT_PHYSICAL_DROP_HEADROOM);
		return XDP_DROP;
	}
	count(CNT_PHYSICAL_FORWARDED);
	return XDP_REDIRECT;
}

char _license[] SEC("license") = "GPL";
