/* netagent's router without its per-link counters (link_stats): the bench
 * measures what they cost against the real one, in the same run. */
#define NETAGENT_NO_LINK_STATS
#include "../../bpf/router.c"
