package nftables

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// kernelJhash is the kernel's jhash (include/linux/jhash.h, Bob Jenkins'
// lookup3) as nft_jhash uses it: the hash of the key's bytes scaled into
// [0, mod) by reciprocal_scale. With it a test predicts which slot — so
// which real — the kernel picks for a client address, and can check the
// kernel against the model for every source.
func kernelJhash(key []byte, seed, mod uint32) uint32 {
	a := 0xdeadbeef + uint32(len(key)) + seed
	b, c := a, a
	k := key
	for len(k) > 12 {
		a += binary.LittleEndian.Uint32(k)
		b += binary.LittleEndian.Uint32(k[4:])
		c += binary.LittleEndian.Uint32(k[8:])
		a, b, c = jhashMix(a, b, c)
		k = k[12:]
	}
	if len(k) == 0 {
		return scale(c, mod)
	}
	var tail [12]byte
	copy(tail[:], k)
	a += binary.LittleEndian.Uint32(tail[0:])
	b += binary.LittleEndian.Uint32(tail[4:])
	c += binary.LittleEndian.Uint32(tail[8:])
	_, _, c = jhashFinal(a, b, c)
	return scale(c, mod)
}

func jhashMix(a, b, c uint32) (uint32, uint32, uint32) {
	rol := bits.RotateLeft32
	a -= c
	a ^= rol(c, 4)
	c += b
	b -= a
	b ^= rol(a, 6)
	a += c
	c -= b
	c ^= rol(b, 8)
	b += a
	a -= c
	a ^= rol(c, 16)
	c += b
	b -= a
	b ^= rol(a, 19)
	a += c
	c -= b
	c ^= rol(b, 4)
	b += a
	return a, b, c
}

func jhashFinal(a, b, c uint32) (uint32, uint32, uint32) {
	rol := bits.RotateLeft32
	c ^= b
	c -= rol(b, 14)
	a ^= c
	a -= rol(c, 11)
	b ^= a
	b -= rol(a, 25)
	c ^= b
	c -= rol(b, 16)
	a ^= c
	a -= rol(c, 4)
	b ^= a
	b -= rol(a, 14)
	c ^= b
	c -= rol(b, 24)
	return a, b, c
}

// scale is the kernel's reciprocal_scale.
func scale(v, mod uint32) uint32 { return uint32(uint64(v) * uint64(mod) >> 32) }

// shSlot is the slot the kernel picks for a client address.
func shSlot(src netip.Addr, mod uint32) uint32 { return kernelJhash(src.AsSlice(), jhashSeed, mod) }
