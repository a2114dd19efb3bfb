#include "pub_common.h"

/* Pop one VLAN tag and redirect to the ifindex it names (trusting it, as the
 * published design does). */
SEC("xdp")
int router(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct vlan_eth *h = data;
	unsigned char macs[12];

	if ((void *)(h + 1) > end)
		return XDP_DROP;
	if (h->tpid != bpf_htons(ETH_P_8021Q) && h->tpid != bpf_htons(ETH_P_8021AD))
		return XDP_DROP;
	int ifindex = bpf_ntohs(h->tci) & 0xfff;
	__builtin_memcpy(macs, h->dst, 12);
	if (bpf_xdp_adjust_head(ctx, 4))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + 12 > end)
		return XDP_DROP;
	__builtin_memcpy(data, macs, 12);
	return bpf_redirect(ifindex, 0);
}

char LICENSE[] SEC("license") = "GPL";
