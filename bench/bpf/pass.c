/* Injector for the bridge baseline: in a live BPF_PROG_TEST_RUN, XDP_PASS
 * hands the frame to the stack as if the ingress link had received it. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
