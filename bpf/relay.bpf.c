// SPDX-License-Identifier: MIT OR Apache-2.0
//
// rturn's kernel fast path (issue 18): a TC classifier that relays UDP ChannelData (RFC 8656
// §12) of bound channels without the packet reaching user space.
//
// One program, `rturn_relay`, attached to the ingress of the interface the packets arrive on
// (on `lo` both directions arrive there), does both directions:
//   client -> peer: a UDP datagram to a listen address whose payload is ChannelData for a
//     (client, listen, channel) in `to_peer` loses its 4-byte header and leaves as plain UDP
//     from the relay address to the peer;
//   peer -> client: a UDP datagram from a peer to a relay address that is in `to_client` gains
//     the 4-byte header and leaves as ChannelData from the listen address to the client.
// Everything else - other protocols, IP options, fragments, GSO packets, a ChannelData length
// that does not match the UDP length (padding included), an unknown channel or peer - is
// passed on unchanged (TC_ACT_UNSPEC, so that any TC program after this one still sees it):
// user space stays the authority and handles it.
//
// User space (src/offload/) owns the maps: it inserts an entry on a ChannelBind and removes it
// when the channel, its permission or the allocation ends. The layout of the keys and values
// is the contract in src/offload/entry.rs; addresses, ports and the channel number are in
// network byte order, IPv4 addresses in the first 4 of the 16 bytes.
//
// IPv4 only for now. On `lo` a relayed packet is rewritten in place and continues up lo's
// ingress (TC_ACT_OK): it keeps the route the output path gave it (local delivery), so the
// kernel hands it to the socket its new addresses name. (bpf_redirect to lo's ingress would
// drop that route, and the new route lookup refuses 127.0.0.0/8 as martian unless
// route_localnet is set.) So on lo a packet is relayed only when a local UDP socket will take
// it (bpf_sk_lookup_udp); to a peer or client elsewhere it goes to user space unchanged. On
// an Ethernet-framed interface (veth, a NIC) the program asks the FIB for the rewritten
// packet's route (bpf_fib_lookup, which needs forwarding enabled on that interface), writes
// the next hop's MAC addresses and redirects it to the egress interface; with no route, an
// unresolved neighbour or a packet over the MTU it passes to user space. The UDP checksum of a
// rewritten IPv4 packet is set to zero (allowed for IPv4, RFC 768); the IP header checksum is
// recomputed.
//
// Rebuild with scripts/build-bpf.sh; the committed relay.bpf.o must match its output.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define ETH_HLEN_ 14
#define IP4_HLEN 20
#define UDP_HLEN 8
#define CD_HLEN 4
#define LOOPBACK_IFINDEX 1
#define AF_INET_ 2
#define MAX_ENTRIES 65536
// "Not mine": the next TC program (TCX) or filter (clsact) sees the packet, and with none the
// kernel passes it on unchanged to the stack and user space.
#define PASS TC_ACT_UNSPEC

struct to_peer_key {
    __u32 family;
    __u8 client_ip[16];
    __u8 listen_ip[16];
    __u16 client_port;
    __u16 listen_port;
    __u16 channel;
    __u16 pad;
};

struct to_peer_value {
    __u8 relay_ip[16];
    __u8 peer_ip[16];
    __u16 relay_port;
    __u16 peer_port;
    __u32 pad;
    __u64 packets;
    __u64 bytes;
};

struct to_client_key {
    __u32 family;
    __u8 peer_ip[16];
    __u8 relay_ip[16];
    __u16 peer_port;
    __u16 relay_port;
};

struct to_client_value {
    __u8 client_ip[16];
    __u8 listen_ip[16];
    __u16 client_port;
    __u16 listen_port;
    __u16 channel;
    __u16 pad;
    __u64 packets;
    __u64 bytes;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_ENTRIES);
    __type(key, struct to_peer_key);
    __type(value, struct to_peer_value);
} to_peer SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_ENTRIES);
    __type(key, struct to_client_key);
    __type(value, struct to_client_value);
} to_client SEC(".maps");

// The IPv4 header and what follows it, as read from the packet.
struct headers4 {
    struct iphdr ip;
    struct udphdr udp;
    __u8 cd[CD_HLEN];
};

// The UDP header and the ChannelData header written in front of a payload to a client.
struct udp_cd {
    struct udphdr udp;
    __be16 channel;
    __be16 length;
};

static __always_inline void ip4_set_checksum(struct iphdr *ip)
{
    __u16 *words = (__u16 *)ip;
    __u32 sum = 0;

    ip->check = 0;
#pragma unroll
    for (int i = 0; i < IP4_HLEN / 2; i++)
        sum += words[i];
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    ip->check = (__u16)~sum;
}

static __always_inline __be32 ip4_of(const __u8 ip[16])
{
    return *(const __be32 *)ip;
}

// Whether a local UDP socket takes a datagram from saddr:sport to daddr:dport.
static __always_inline int local_socket(struct __sk_buff *skb, const __u8 saddr[16], __be16 sport,
                                        const __u8 daddr[16], __be16 dport)
{
    struct bpf_sock_tuple tuple = {};
    struct bpf_sock *sk;

    tuple.ipv4.saddr = ip4_of(saddr);
    tuple.ipv4.daddr = ip4_of(daddr);
    tuple.ipv4.sport = sport;
    tuple.ipv4.dport = dport;
    sk = bpf_sk_lookup_udp(skb, &tuple, sizeof(tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
    if (!sk)
        return 0;
    bpf_sk_release(sk);
    return 1;
}

// Where a rewritten packet leaves: ifindex 0 is on up lo's ingress (local delivery), else the
// egress of that interface with these Ethernet addresses (dmac then smac, as on the wire).
struct egress {
    __u32 ifindex;
    __u8 macs[12];
};

// Decides, before anything is changed, whether a packet rewritten to src -> dst can be relayed
// and where it goes. On lo: when a local socket takes it. Elsewhere: when the FIB has a route
// and a resolved neighbour for it (bpf_fib_lookup; this needs forwarding enabled on the
// interface it came in on) and it fits that route's MTU. Anything else stays in user space.
static __always_inline int route(struct __sk_buff *skb, const __u8 src[16], __be16 sport,
                                 const __u8 dst[16], __be16 dport, __u32 total,
                                 struct egress *out)
{
    struct bpf_fib_lookup fib = {};

    if (skb->ifindex == LOOPBACK_IFINDEX) {
        out->ifindex = 0;
        return local_socket(skb, src, sport, dst, dport);
    }
    fib.family = AF_INET_;
    fib.l4_protocol = IPPROTO_UDP;
    fib.sport = sport;
    fib.dport = dport;
    fib.tot_len = total;
    fib.ifindex = skb->ifindex;
    fib.ipv4_src = ip4_of(src);
    fib.ipv4_dst = ip4_of(dst);
    if (bpf_fib_lookup(skb, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
        return 0;
    out->ifindex = fib.ifindex;
    __builtin_memcpy(out->macs, fib.dmac, 6);
    __builtin_memcpy(out->macs + 6, fib.smac, 6);
    return 1;
}

// Sends a rewritten packet where route() said.
static __always_inline int send(struct __sk_buff *skb, struct egress *out)
{
    if (!out->ifindex)
        return TC_ACT_OK;
    if (bpf_skb_store_bytes(skb, 0, out->macs, sizeof(out->macs), 0))
        return TC_ACT_SHOT;
    return bpf_redirect(out->ifindex, 0);
}

// Client -> peer: strip the ChannelData header. BPF_ADJ_ROOM_NET removes the 4 bytes right
// after the IP header (the start of the UDP header), so the UDP header is written back over
// what is left of it and of the ChannelData header; the helper does not touch the IP header,
// so its total length and checksum are set here.
static __always_inline int relay_to_peer(struct __sk_buff *skb, struct headers4 *h,
                                         struct to_peer_value *v, __u32 payload)
{
    struct udphdr udp = {
        .source = v->relay_port,
        .dest = v->peer_port,
        .len = bpf_htons(UDP_HLEN + payload),
        .check = 0,
    };
    struct iphdr ip = h->ip;
    struct egress via;

    if (!route(skb, v->relay_ip, v->relay_port, v->peer_ip, v->peer_port,
               IP4_HLEN + UDP_HLEN + payload, &via))
        return PASS;
    if (bpf_skb_adjust_room(skb, -CD_HLEN, BPF_ADJ_ROOM_NET, 0))
        return PASS;
    if (bpf_skb_store_bytes(skb, ETH_HLEN_ + IP4_HLEN, &udp, sizeof(udp), 0))
        return TC_ACT_SHOT;
    ip.saddr = ip4_of(v->relay_ip);
    ip.daddr = ip4_of(v->peer_ip);
    ip.tot_len = bpf_htons(IP4_HLEN + UDP_HLEN + payload);
    ip4_set_checksum(&ip);
    if (bpf_skb_store_bytes(skb, ETH_HLEN_, &ip, sizeof(ip), 0))
        return TC_ACT_SHOT;
    __sync_fetch_and_add(&v->packets, 1);
    __sync_fetch_and_add(&v->bytes, payload);
    return send(skb, &via);
}

// Peer -> client: BPF_ADJ_ROOM_NET inserts 4 bytes right after the IP header; the UDP header
// and the ChannelData header are written over the first 12 bytes from there.
static __always_inline int relay_to_client(struct __sk_buff *skb, struct headers4 *h,
                                           struct to_client_value *v, __u32 payload)
{
    struct udp_cd hdr = {
        .udp = {
            .source = v->listen_port,
            .dest = v->client_port,
            .len = bpf_htons(UDP_HLEN + CD_HLEN + payload),
            .check = 0,
        },
        .channel = v->channel,
        .length = bpf_htons(payload),
    };
    struct iphdr ip = h->ip;
    struct egress via;

    if (!route(skb, v->listen_ip, v->listen_port, v->client_ip, v->client_port,
               IP4_HLEN + UDP_HLEN + CD_HLEN + payload, &via))
        return PASS;
    if (bpf_skb_adjust_room(skb, CD_HLEN, BPF_ADJ_ROOM_NET, 0))
        return PASS;
    if (bpf_skb_store_bytes(skb, ETH_HLEN_ + IP4_HLEN, &hdr, sizeof(hdr), 0))
        return TC_ACT_SHOT;
    ip.saddr = ip4_of(v->listen_ip);
    ip.daddr = ip4_of(v->client_ip);
    ip.tot_len = bpf_htons(IP4_HLEN + UDP_HLEN + CD_HLEN + payload);
    ip4_set_checksum(&ip);
    if (bpf_skb_store_bytes(skb, ETH_HLEN_, &ip, sizeof(ip), 0))
        return TC_ACT_SHOT;
    __sync_fetch_and_add(&v->packets, 1);
    __sync_fetch_and_add(&v->bytes, payload);
    return send(skb, &via);
}

SEC("classifier")
int rturn_relay(struct __sk_buff *skb)
{
    struct headers4 h;
    __u32 total, udp_len;

    if (skb->protocol != bpf_htons(ETH_P_IP))
        return PASS;
    if (skb->gso_segs > 1 || skb->gso_size)
        return PASS;
    if (bpf_skb_load_bytes(skb, ETH_HLEN_, &h, IP4_HLEN + UDP_HLEN))
        return PASS;
    if (h.ip.version != 4 || h.ip.ihl != 5 || h.ip.protocol != IPPROTO_UDP)
        return PASS;
    if (h.ip.frag_off & bpf_htons(0x3fff))
        return PASS;
    total = bpf_ntohs(h.ip.tot_len);
    udp_len = bpf_ntohs(h.udp.len);
    if (skb->len != ETH_HLEN_ + total || udp_len != total - IP4_HLEN || udp_len < UDP_HLEN)
        return PASS;

    if (udp_len >= UDP_HLEN + CD_HLEN &&
        !bpf_skb_load_bytes(skb, ETH_HLEN_ + IP4_HLEN + UDP_HLEN, h.cd, CD_HLEN) &&
        (h.cd[0] & 0xf0) == 0x40) {
        __u32 payload = udp_len - UDP_HLEN - CD_HLEN;
        __u32 length = ((__u32)h.cd[2] << 8) | h.cd[3];
        struct to_peer_key key = {
            .family = 4,
            .client_port = h.udp.source,
            .listen_port = h.udp.dest,
            .channel = *(__u16 *)&h.cd[0],
        };
        struct to_peer_value *v;

        *(__be32 *)key.client_ip = h.ip.saddr;
        *(__be32 *)key.listen_ip = h.ip.daddr;
        v = bpf_map_lookup_elem(&to_peer, &key);
        if (v) {
            if (length != payload)
                return PASS;
            return relay_to_peer(skb, &h, v, payload);
        }
    }

    {
        __u32 payload = udp_len - UDP_HLEN;
        struct to_client_key key = {
            .family = 4,
            .peer_port = h.udp.source,
            .relay_port = h.udp.dest,
        };
        struct to_client_value *v;

        *(__be32 *)key.peer_ip = h.ip.saddr;
        *(__be32 *)key.relay_ip = h.ip.daddr;
        v = bpf_map_lookup_elem(&to_client, &key);
        if (v && payload <= 0xffff - IP4_HLEN - UDP_HLEN - CD_HLEN)
            return relay_to_client(skb, &h, v, payload);
    }
    return PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
