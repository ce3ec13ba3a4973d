/* The cluster file's nodes as net/'s server and client configurations
 * (net/cluster/cluster-net.h). */
#include "net/cluster/cluster-net.h"

#include <errno.h>

int cl_cluster_server_new(const struct cl_cluster *cl, unsigned self,
			  struct net_server_config *sc, struct net_server **out)
{
	const char *keys[CL_MAX_NODES], *names[CL_MAX_NODES];

	*out = NULL;
	if (self >= cl->nnodes)
		return -EINVAL;
	for (unsigned i = 0; i < cl->nnodes; i++) {
		keys[i] = cl->nodes[i].public_key;
		names[i] = cl->nodes[i].name;
	}
	sc->endpoint = cl->nodes[self].address;
	sc->allowed_keys = keys;
	sc->allowed_names = names;
	sc->nallowed = cl->nnodes;
	sc->fs_id = cl->has_fs ? cl->fs_id : NULL;
	sc->fs_public_key = cl->has_fs ? cl->fs_public_key : NULL;
	int ret = net_server_new(sc, out);
	/* net_server_new copied what it keeps of the arrays */
	sc->allowed_keys = sc->allowed_names = NULL;
	return ret;
}

int cl_cluster_client_new(const struct cl_cluster *cl,
			  struct net_client_config *cc, struct net_client **out)
{
	struct net_peer_config peers[CL_MAX_NODES];

	for (unsigned i = 0; i < cl->nnodes; i++)
		peers[i] = (struct net_peer_config){cl->nodes[i].address,
						    cl->nodes[i].public_key,
						    cl->nodes[i].name};
	cc->peers = peers;
	cc->npeers = cl->nnodes;
	int ret = net_client_new(cc, out);
	cc->peers = NULL; /* net_client_new copied the endpoints */
	return ret;
}
