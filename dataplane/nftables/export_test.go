package nftables

import (
	"net/netip"

	"github.com/arraynetworks/edgeagent/model"
)

// RenderError exposes render's verdict to the external tests.
func RenderError(vs model.VirtualService) error { return render(&vs).err }

// KernelJhash and JhashSeed expose the kernel's hash model to the external
// benchmarks.
var KernelJhash = kernelJhash

const JhashSeed = jhashSeed

// ShTable returns the slot count and table of an sh service.
func ShTable(vs model.VirtualService) (uint32, []netip.AddrPort) {
	r := render(&vs)
	return r.sel.mod, r.slots
}
