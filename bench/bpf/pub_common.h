/* Stand-ins for the published design's XDP programs, written for the
 * benchmark from the behaviour SPEC.md describes (no allowlist, no counters,
 * same pinned DEVMAP). The baseline script loads these with xdp-loader, as
 * the published mdev script does. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__type(key, int);
	__type(value, int);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} router_iface SEC(".maps");

struct vlan_eth {
	unsigned char dst[6];
	unsigned char src[6];
	__be16 tpid;
	__be16 tci;
	__be16 proto;
};
