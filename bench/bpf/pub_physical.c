#include "pub_common.h"

/* Tag with the ingress ifindex as VLAN ID and send to the router link. */
SEC("xdp")
int physical(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	unsigned char macs[12];

	if (data + ETH_HLEN > end)
		return XDP_DROP;
	__builtin_memcpy(macs, data, 12);
	if (bpf_xdp_adjust_head(ctx, -4))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	struct vlan_eth *h = data;
	if ((void *)(h + 1) > end)
		return XDP_DROP;
	__builtin_memcpy(h->dst, macs, 12);
	h->tpid = bpf_htons(ETH_P_8021Q);
	h->tci = bpf_htons(ctx->ingress_ifindex & 0xfff);
	return bpf_redirect_map(&router_iface, 0, 0);
}

char LICENSE[] SEC("license") = "GPL";
