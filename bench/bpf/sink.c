/* Receiver: counts and drops, so the far end of every path costs the same
 * and a veth accepts redirected XDP frames (it needs a program or GRO). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} sink_count SEC(".maps");

SEC("xdp")
int sink(struct xdp_md *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&sink_count, &k);

	if (v)
		*v += 1;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
