/* The cluster file's nodes as net/'s configurations: one node's server
 * (its address, admitting every node's key under its name) and a client
 * to every node. The only place that turns a struct cl_cluster into
 * net_server_config and net_peer_config arrays. */
#pragma once

#include "net/client/client.h"
#include "net/cluster/config.h"
#include "net/server/server.h"

/* Start the server of node @self of @cl: @sc carries what is the node's
 * own (keys, database, column families, data_dir, capacity, workers); its
 * endpoint, allowed keys and names, and the filesystem whose heads it
 * accepts ([filesystem]: fs_id, fs_public_key) are filled in from @cl.
 * 0, -EINVAL
 * (@self not in @cl), or the -errno of net_server_new. */
int cl_cluster_server_new(const struct cl_cluster *cl, unsigned self,
			  struct net_server_config *sc,
			  struct net_server **out);

/* Start a client to every node of @cl, peer i being node i: @cc carries
 * the keys and the timeouts; its peers are filled in from @cl. 0, or the
 * -errno of net_client_new. */
int cl_cluster_client_new(const struct cl_cluster *cl,
			  struct net_client_config *cc,
			  struct net_client **out);
