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
// A client of a wildcard listen address (0.0.0.0, ::) is entered with a zero listen address:
// its ChannelData matches on a second lookup, and the program writes the address the client
// sent to into the channel's `to_client` value, which user space leaves zero; until then the
// peer's datagrams go to user space.
// Everything else - other protocols, IP options or IPv6 extension headers, fragments, GSO
// packets, a ChannelData length that does not match the UDP length (padding included), an
// unknown channel or peer - is passed on unchanged (TC_ACT_UNSPEC, so that any TC program after this one still sees it):
// user space stays the authority and handles it.
//
// User space (src/offload/) owns the maps: it inserts an entry on a ChannelBind and removes it
// when the channel, its permission or the allocation ends. The layout of the keys and values
// is the contract in src/offload/entry.rs; addresses, ports and the channel number are in
// network byte order, IPv4 addresses in the first 4 of the 16 bytes.
//
// IPv4 and IPv6. The payload moves 4 bytes inside the packet (over the stripped header, or to
// make room for it) while the IP and UDP headers stay where they are, so that a checksum left
// to the device (CHECKSUM_PARTIAL, as local senders on lo and veth leave it) stays valid;
// the UDP checksum is then the new pseudo-header sum, else it is updated word by word (IPv4's
// zero stays zero). Payloads of SCRATCH bytes or more go to user space.
//
// On `lo` a relayed packet continues up lo's ingress (TC_ACT_OK): it keeps the route the
// output path gave it (local delivery), so the kernel hands it to the socket its new addresses
// name. (bpf_redirect to lo's ingress would drop that route, and the new route lookup refuses
// 127.0.0.0/8 as martian unless route_localnet is set.) So on lo a packet is relayed only when
// a local UDP socket will take it (bpf_sk_lookup_udp); to a peer or client elsewhere it goes
// to user space unchanged. On an Ethernet-framed interface (veth, a NIC) the program asks the
// FIB for the rewritten packet's route (bpf_fib_lookup, which needs forwarding enabled),
// writes the next hop's MAC addresses and redirects it to the egress interface; with no
// route, an unresolved neighbour or a packet over the MTU it passes to user space.
//
// Rebuild with scripts/build-bpf.sh; the committed relay.bpf.o must match its output.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define ETH_HLEN_ 14
#define IP4_HLEN 20
#define IP6_HLEN 40
#define UDP_HLEN 8
#define CD_HLEN 4
#define LOOPBACK_IFINDEX 1
#define AF_INET_ 2
#define AF_INET6_ 10
#define MAX_ENTRIES 65536
// The largest payload relayed in the kernel (bigger ones go to user space), a power of two.
#define SCRATCH 2048
// "Not mine": the next TC program (TCX) or filter (clsact) sees the packet, and with none the
// kernel passes it on unchanged to the stack and user space.
#define PASS TC_ACT_UNSPEC
// A relayed datagram is a new one that the relay sends, as user space's would be: it leaves
// with the usual default TTL (IPv4) or hop limit (IPv6), not the one it arrived with.
#define FRESH_TTL 64

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

// One CPU's copy of a payload while it moves 4 bytes (see relay()).
struct scratch_buf {
    __u8 bytes[SCRATCH];
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct scratch_buf);
} scratch SEC(".maps");

// A UDP datagram as read from the packet, either family.
struct packet {
    __u32 family;  // 4 or 6
    __u32 l3_len;  // the IP header: 20 or 40 bytes
    __u32 udp_len; // UDP header and payload
    __u8 src[16];
    __u8 dst[16];
    __be16 sport;
    __be16 dport;
    __be16 check; // the UDP checksum field
    __u8 cd[CD_HLEN];
    union {
        struct iphdr v4;
        struct ipv6hdr v6;
    } ip;
};

// Where a packet goes once rewritten, and what it becomes.
struct rewrite {
    __u8 src[16];
    __u8 dst[16];
    __be16 sport;
    __be16 dport;
    __be16 channel; // to a client: the ChannelData header's channel; to a peer: 0
    __u16 payload;  // payload bytes, without the ChannelData header
    __u64 *packets;
    __u64 *bytes;
};

// The words a checksum update swaps: both addresses, both ports, the UDP length (twice: in the
// pseudo-header and in the UDP header) and the ChannelData header (zero where there is none).
struct csum_words {
    __u8 src[16];
    __u8 dst[16];
    __be16 sport;
    __be16 dport;
    __be16 len1;
    __be16 len2;
    __u8 cd[CD_HLEN];
};

// The IPv6 pseudo-header (RFC 8200 §8.1).
struct pseudo6 {
    __u8 src[16];
    __u8 dst[16];
    __be32 len;
    __be32 next;
};

// The UDP header and the ChannelData header written in front of a payload to a client.
struct udp_cd {
    struct udphdr udp;
    __be16 channel;
    __be16 length;
};

static __always_inline __u16 fold(__s64 sum)
{
    __u32 s = (__u32)sum;

    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return (__u16)s;
}

static __always_inline void ip4_set_checksum(struct iphdr *ip)
{
    __u16 *words = (__u16 *)ip;
    __u32 sum = 0;

    ip->check = 0;
#pragma unroll
    for (int i = 0; i < IP4_HLEN / 2; i++)
        sum += words[i];
    ip->check = (__u16)~fold(sum);
}

static __always_inline __be32 ip4_of(const __u8 ip[16])
{
    return *(const __be32 *)ip;
}

// The IPv4 pseudo-header (RFC 768).
struct pseudo4 {
    __be32 src;
    __be32 dst;
    __u8 zero;
    __u8 proto;
    __be16 len;
};

// The folded sum of a UDP pseudo-header: what the UDP checksum field holds while the rest of
// the checksum is left to the device (CHECKSUM_PARTIAL, as local senders on lo and veth leave
// it; the receiver on this machine then trusts it, a device fills it in).
static __always_inline __u16 pseudo_sum(__u32 family, const __u8 src[16], const __u8 dst[16],
                                        __u32 udp_len)
{
    if (family == 4) {
        struct pseudo4 ph = {
            .src = ip4_of(src),
            .dst = ip4_of(dst),
            .proto = IPPROTO_UDP,
            .len = bpf_htons(udp_len),
        };

        return fold(bpf_csum_diff(0, 0, (__be32 *)&ph, sizeof(ph), 0));
    } else {
        struct pseudo6 ph = {.len = bpf_htonl(udp_len), .next = bpf_htonl(IPPROTO_UDP)};

        __builtin_memcpy(ph.src, src, 16);
        __builtin_memcpy(ph.dst, dst, 16);
        return fold(bpf_csum_diff(0, 0, (__be32 *)&ph, sizeof(ph), 0));
    }
}

// The UDP checksum of the rewritten datagram. A field holding only the pseudo-header sum gets
// the new pseudo-header's; none (IPv4's zero) stays none; a full checksum is updated for every
// word that changes (removing or inserting the 4-byte ChannelData header right after the UDP
// header is the same as zeroing it or filling it in: the rest of the payload keeps its
// alignment).
static __always_inline __be16 udp_checksum(struct packet *p, struct rewrite *r, __u32 udp_len)
{
    struct csum_words from = {}, to = {};
    __u16 sum;

    if (p->family == 4 && !p->check)
        return 0;
    if (p->check == pseudo_sum(p->family, p->src, p->dst, p->udp_len))
        return pseudo_sum(p->family, r->src, r->dst, udp_len);
    __builtin_memcpy(from.src, p->src, 16);
    __builtin_memcpy(from.dst, p->dst, 16);
    from.sport = p->sport;
    from.dport = p->dport;
    from.len1 = from.len2 = bpf_htons(p->udp_len);
    __builtin_memcpy(to.src, r->src, 16);
    __builtin_memcpy(to.dst, r->dst, 16);
    to.sport = r->sport;
    to.dport = r->dport;
    to.len1 = to.len2 = bpf_htons(udp_len);
    if (r->channel) {
        *(__be16 *)&to.cd[0] = r->channel;
        *(__be16 *)&to.cd[2] = bpf_htons(r->payload);
    } else {
        __builtin_memcpy(from.cd, p->cd, CD_HLEN);
    }
    sum = ~fold(bpf_csum_diff((__be32 *)&from, sizeof(from), (__be32 *)&to, sizeof(to),
                              (__u16)~p->check));
    return sum ? sum : 0xffff;
}

// Whether a local UDP socket takes a datagram from src:sport to dst:dport.
static __always_inline int local_socket(struct __sk_buff *skb, __u32 family, struct rewrite *r)
{
    struct bpf_sock_tuple tuple = {};
    struct bpf_sock *sk;

    if (family == 4) {
        tuple.ipv4.saddr = ip4_of(r->src);
        tuple.ipv4.daddr = ip4_of(r->dst);
        tuple.ipv4.sport = r->sport;
        tuple.ipv4.dport = r->dport;
        sk = bpf_sk_lookup_udp(skb, &tuple, sizeof(tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
    } else {
        __builtin_memcpy(tuple.ipv6.saddr, r->src, 16);
        __builtin_memcpy(tuple.ipv6.daddr, r->dst, 16);
        tuple.ipv6.sport = r->sport;
        tuple.ipv6.dport = r->dport;
        sk = bpf_sk_lookup_udp(skb, &tuple, sizeof(tuple.ipv6), BPF_F_CURRENT_NETNS, 0);
    }
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

// Decides, before anything is changed, whether a packet rewritten by r can be relayed and
// where it goes. On lo: when a local socket takes it. Elsewhere: when the FIB has a route
// and a resolved neighbour for it (bpf_fib_lookup; this needs forwarding enabled on the
// interface it came in on) and it fits that route's MTU. Anything else stays in user space.
static __always_inline int route(struct __sk_buff *skb, __u32 family, struct rewrite *r,
                                 __u32 total, struct egress *out)
{
    struct bpf_fib_lookup fib = {};

    if (skb->ifindex == LOOPBACK_IFINDEX) {
        out->ifindex = 0;
        return local_socket(skb, family, r);
    }
    fib.l4_protocol = IPPROTO_UDP;
    fib.sport = r->sport;
    fib.dport = r->dport;
    fib.tot_len = total;
    fib.ifindex = skb->ifindex;
    if (family == 4) {
        fib.family = AF_INET_;
        fib.ipv4_src = ip4_of(r->src);
        fib.ipv4_dst = ip4_of(r->dst);
    } else {
        fib.family = AF_INET6_;
        __builtin_memcpy(fib.ipv6_src, r->src, 16);
        __builtin_memcpy(fib.ipv6_dst, r->dst, 16);
    }
    if (bpf_fib_lookup(skb, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
        return 0;
    out->ifindex = fib.ifindex;
    __builtin_memcpy(out->macs, fib.dmac, 6);
    __builtin_memcpy(out->macs + 6, fib.smac, 6);
    return 1;
}

// Moves the payload 4 bytes: to a peer (r->channel 0) over the ChannelData header, which is
// then cut from the end; to a client onto 4 bytes added at the end, making room for the
// header. The IP and UDP headers stay where they are, so a checksum left to the device
// (CHECKSUM_PARTIAL: csum_start names the UDP header) stays right; bpf_skb_adjust_room would
// move the headers instead and leave csum_start 4 bytes off.
static __always_inline int move_payload(struct __sk_buff *skb, struct packet *p,
                                        struct rewrite *r)
{
    __u32 base = ETH_HLEN_ + p->l3_len + UDP_HLEN;
    // The new length; it also drops any Ethernet padding after the IP packet.
    __u32 end = base + (r->channel ? CD_HLEN : 0) + r->payload;
    // 1..=SCRATCH whatever r->payload is, as the verifier can see; r->payload when it is in
    // 1..SCRATCH (relay() checked it is below SCRATCH).
    __u32 len = ((r->payload - 1) & (SCRATCH - 1)) + 1;
    __u32 zero = 0;
    struct scratch_buf *buf;

    if (r->payload) {
        buf = bpf_map_lookup_elem(&scratch, &zero);
        if (!buf)
            return -1;
        if (r->channel) {
            if (bpf_skb_load_bytes(skb, base, buf->bytes, len))
                return -1;
            if (bpf_skb_change_tail(skb, end, 0))
                return -1;
            return bpf_skb_store_bytes(skb, base + CD_HLEN, buf->bytes, len,
                                       BPF_F_RECOMPUTE_CSUM);
        }
        if (bpf_skb_load_bytes(skb, base + CD_HLEN, buf->bytes, len))
            return -1;
        if (bpf_skb_store_bytes(skb, base, buf->bytes, len, BPF_F_RECOMPUTE_CSUM))
            return -1;
    } else if (r->channel) {
        return bpf_skb_change_tail(skb, end, 0);
    }
    return bpf_skb_change_tail(skb, end, 0);
}

// Rewrites the datagram and sends it on: the payload moved (move_payload), the UDP header
// (and to a client the ChannelData header) written in front of it, the IP header's addresses
// and length (and IPv4's checksum) set.
static __always_inline int relay(struct __sk_buff *skb, struct packet *p, struct rewrite *r)
{
    __u32 cd = r->channel ? CD_HLEN : 0;
    __u32 udp_len = UDP_HLEN + cd + r->payload;
    struct udp_cd hdr = {
        .udp = {
            .source = r->sport,
            .dest = r->dport,
            .len = bpf_htons(udp_len),
            .check = 0,
        },
        .channel = r->channel,
        .length = bpf_htons(r->payload),
    };
    struct egress via;

    if (r->payload >= SCRATCH)
        return PASS;
    if (!route(skb, p->family, r, p->l3_len + udp_len, &via))
        return PASS;
    hdr.udp.check = udp_checksum(p, r, udp_len);
    if (move_payload(skb, p, r))
        return TC_ACT_SHOT;
    if (bpf_skb_store_bytes(skb, ETH_HLEN_ + p->l3_len, &hdr, UDP_HLEN + cd,
                            BPF_F_RECOMPUTE_CSUM))
        return TC_ACT_SHOT;
    if (p->family == 4) {
        struct iphdr ip = p->ip.v4;

        ip.saddr = ip4_of(r->src);
        ip.daddr = ip4_of(r->dst);
        ip.ttl = FRESH_TTL;
        ip.tot_len = bpf_htons(IP4_HLEN + udp_len);
        ip4_set_checksum(&ip);
        if (bpf_skb_store_bytes(skb, ETH_HLEN_, &ip, sizeof(ip), BPF_F_RECOMPUTE_CSUM))
            return TC_ACT_SHOT;
    } else {
        struct ipv6hdr ip = p->ip.v6;

        __builtin_memcpy(&ip.saddr, r->src, 16);
        __builtin_memcpy(&ip.daddr, r->dst, 16);
        ip.payload_len = bpf_htons(udp_len);
        ip.hop_limit = FRESH_TTL;
        if (bpf_skb_store_bytes(skb, ETH_HLEN_, &ip, sizeof(ip), BPF_F_RECOMPUTE_CSUM))
            return TC_ACT_SHOT;
    }
    __sync_fetch_and_add(r->packets, 1);
    __sync_fetch_and_add(r->bytes, r->payload);
    if (!via.ifindex)
        return TC_ACT_OK;
    if (bpf_skb_store_bytes(skb, 0, via.macs, sizeof(via.macs), 0))
        return TC_ACT_SHOT;
    return bpf_redirect(via.ifindex, 0);
}

// Reads a plain UDP datagram (no IP options, extension headers or fragments; lengths that
// agree with each other and with the packet) into p. 0 when it is one.
static __always_inline int parse(struct __sk_buff *skb, struct packet *p)
{
    struct udphdr udp;
    __u32 total;

    if (skb->protocol == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = &p->ip.v4;

        if (bpf_skb_load_bytes(skb, ETH_HLEN_, ip, IP4_HLEN))
            return -1;
        if (ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
            return -1;
        if (ip->frag_off & bpf_htons(0x3fff))
            return -1;
        p->family = 4;
        p->l3_len = IP4_HLEN;
        total = bpf_ntohs(ip->tot_len);
        __builtin_memset(p->src, 0, 32);
        *(__be32 *)p->src = ip->saddr;
        *(__be32 *)p->dst = ip->daddr;
    } else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip = &p->ip.v6;

        if (bpf_skb_load_bytes(skb, ETH_HLEN_, ip, IP6_HLEN))
            return -1;
        if (ip->version != 6 || ip->nexthdr != IPPROTO_UDP)
            return -1;
        p->family = 6;
        p->l3_len = IP6_HLEN;
        total = IP6_HLEN + bpf_ntohs(ip->payload_len);
        __builtin_memcpy(p->src, &ip->saddr, 16);
        __builtin_memcpy(p->dst, &ip->daddr, 16);
    } else {
        return -1;
    }
    if (bpf_skb_load_bytes(skb, ETH_HLEN_ + p->l3_len, &udp, UDP_HLEN))
        return -1;
    p->udp_len = bpf_ntohs(udp.len);
    // A frame may be longer than its IP packet (Ethernet pads to 60 bytes), never shorter.
    if (skb->len < ETH_HLEN_ + total || p->udp_len != total - p->l3_len ||
        p->udp_len < UDP_HLEN)
        return -1;
    p->sport = udp.source;
    p->dport = udp.dest;
    p->check = udp.check;
    return 0;
}

static __always_inline int is_zero16(const __u8 ip[16])
{
    __u64 w[2];

    __builtin_memcpy(w, ip, 16);
    return !(w[0] | w[1]);
}

// A client of a wildcard listen address sent ChannelData on `channel` to p->dst: the local
// address its channel's data from the peer must come from. Written into the channel's
// to_client value (whose listen address user space enters as zero) when it is not there yet
// or changed, and only into the value of this very client and channel (a to_client value of
// another entry, met while user space replaces one, is left alone).
static __always_inline void learn_listen_ip(struct packet *p, struct to_peer_value *v,
                                            __u16 channel)
{
    struct to_client_key key = {
        .family = p->family,
        .peer_port = v->peer_port,
        .relay_port = v->relay_port,
    };
    struct to_client_value *back;
    __u64 want[2], have[2];

    __builtin_memcpy(key.peer_ip, v->peer_ip, 16);
    __builtin_memcpy(key.relay_ip, v->relay_ip, 16);
    back = bpf_map_lookup_elem(&to_client, &key);
    if (!back || back->client_port != p->sport || back->channel != channel)
        return;
    __builtin_memcpy(want, p->src, 16);
    __builtin_memcpy(have, back->client_ip, 16);
    if (have[0] != want[0] || have[1] != want[1])
        return;
    __builtin_memcpy(want, p->dst, 16);
    __builtin_memcpy(have, back->listen_ip, 16);
    if (have[0] != want[0] || have[1] != want[1])
        __builtin_memcpy(back->listen_ip, want, 16);
}

SEC("classifier")
int rturn_relay(struct __sk_buff *skb)
{
    struct packet p;
    struct rewrite r;

    if (skb->gso_segs > 1 || skb->gso_size)
        return PASS;
    if (parse(skb, &p))
        return PASS;

    __builtin_memset(p.cd, 0, CD_HLEN);
    if (p.udp_len >= UDP_HLEN + CD_HLEN &&
        !bpf_skb_load_bytes(skb, ETH_HLEN_ + p.l3_len + UDP_HLEN, p.cd, CD_HLEN) &&
        (p.cd[0] & 0xc0) == 0x40) {
        __u32 payload = p.udp_len - UDP_HLEN - CD_HLEN;
        __u32 length = ((__u32)p.cd[2] << 8) | p.cd[3];
        struct to_peer_key key = {
            .family = p.family,
            .client_port = p.sport,
            .listen_port = p.dport,
            .channel = *(__u16 *)&p.cd[0],
        };
        struct to_peer_value *v;

        __builtin_memcpy(key.client_ip, p.src, 16);
        __builtin_memcpy(key.listen_ip, p.dst, 16);
        v = bpf_map_lookup_elem(&to_peer, &key);
        if (!v) {
            // A client of a wildcard listen address (0.0.0.0 or ::) is entered with a zero
            // listen address.
            __builtin_memset(key.listen_ip, 0, 16);
            v = bpf_map_lookup_elem(&to_peer, &key);
            if (v && length == payload)
                learn_listen_ip(&p, v, key.channel);
        }
        if (v) {
            if (length != payload)
                return PASS;
            __builtin_memcpy(r.src, v->relay_ip, 16);
            __builtin_memcpy(r.dst, v->peer_ip, 16);
            r.sport = v->relay_port;
            r.dport = v->peer_port;
            r.channel = 0;
            r.payload = payload;
            r.packets = &v->packets;
            r.bytes = &v->bytes;
            return relay(skb, &p, &r);
        }
    }

    {
        __u32 payload = p.udp_len - UDP_HLEN;
        struct to_client_key key = {
            .family = p.family,
            .peer_port = p.sport,
            .relay_port = p.dport,
        };
        struct to_client_value *v;

        __builtin_memcpy(key.peer_ip, p.src, 16);
        __builtin_memcpy(key.relay_ip, p.dst, 16);
        v = bpf_map_lookup_elem(&to_client, &key);
        if (!v || payload > 0xffff - IP6_HLEN - UDP_HLEN - CD_HLEN)
            return PASS;
        // A client of a wildcard listen address the program has not seen send yet: which
        // local address it sends to is not known, so user space answers.
        if (is_zero16(v->listen_ip))
            return PASS;
        __builtin_memcpy(r.src, v->listen_ip, 16);
        __builtin_memcpy(r.dst, v->client_ip, 16);
        r.sport = v->listen_port;
        r.dport = v->client_port;
        r.channel = v->channel;
        r.payload = payload;
        r.packets = &v->packets;
        r.bytes = &v->bytes;
        return relay(skb, &p, &r);
    }
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
