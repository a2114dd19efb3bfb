/* netagent's physical without its per-link counters (link_stats): the bench
 * measures what they cost against the real one, in the same run. */
#define NETAGENT_NO_LINK_STATS
#include "../../bpf/physical.c"
