/* The limit for netagent's XDP programs: an XDP program that does nothing
 * but redirect every frame to target[0] (a DEVMAP, as physical's
 * router_iface). Its ns/frame in a live BPF_PROG_TEST_RUN is the cost of
 * running any program plus the redirect and the delivery to the peer:
 * physical and router are measured against it in the same run
 * (bench/lib/dataplane.mjs, "program cost"). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__type(key, int);
	__type(value, int);
	__uint(max_entries, 1);
} target SEC(".maps");

SEC("xdp")
int redirect(struct xdp_md *ctx)
{
	return bpf_redirect_map(&target, 0, XDP_DROP);
}

char LICENSE[] SEC("license") = "GPL";
