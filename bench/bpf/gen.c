/* Generator: run with BPF_PROG_TEST_RUN + BPF_F_TEST_XDP_LIVE_FRAMES and the
 * generator link as ingress ifindex. In a live run XDP_TX becomes a redirect
 * out of that link, so every repetition puts one real frame on the wire. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int gen(struct xdp_md *ctx)
{
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
