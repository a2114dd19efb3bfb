/* Traffic tools for the data-plane benchmark (one object, loaded once per
 * role so every instance has maps of its own).
 *
 * In a BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES the kernel recycles
 * the frame pages without rewriting them, and a program downstream (router
 * pops the tag in place) may have changed the bytes. So gen and inj first
 * restore the frame's first 18 bytes (MACs, tag, ethertype) from `tmpl`.
 *
 * gen:  then XDP_TX, which a live run turns into a redirect out of the
 *       ingress link: every repetition puts one real frame on the wire.
 * inj:  then tail-calls inj_target[0] (the program under test), so the
 *       program runs on a correct frame at the DUT's own ingress.
 * pass: XDP_PASS: a live run hands the frame to the stack (bridge baseline).
 * drop: XDP_DROP: inj -> drop is the injector's own cost per frame.
 * sink: attached at the receivers; counts and drops. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define HDR 18

struct hdr {
	unsigned char b[HDR];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct hdr);
	__uint(max_entries, 1);
} tmpl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
	__uint(max_entries, 1);
} inj_target SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} sink_count SEC(".maps");

static __always_inline int restore(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 k = 0;
	struct hdr *h = bpf_map_lookup_elem(&tmpl, &k);

	if (!h || data + HDR > end)
		return -1;
	__builtin_memcpy(data, h->b, HDR);
	return 0;
}

SEC("xdp")
int gen(struct xdp_md *ctx)
{
	if (restore(ctx))
		return XDP_ABORTED;
	return XDP_TX;
}

SEC("xdp")
int inj(struct xdp_md *ctx)
{
	if (restore(ctx))
		return XDP_ABORTED;
	bpf_tail_call(ctx, &inj_target, 0);
	return XDP_ABORTED;
}

SEC("xdp")
int pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* Target of inj when measuring the injector's own cost. */
SEC("xdp")
int drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

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
