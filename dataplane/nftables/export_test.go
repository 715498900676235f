package nftables

import "github.com/arraynetworks/edgeagent/model"

// RenderError exposes render's verdict to the external tests.
func RenderError(vs model.VirtualService) error { return render(&vs).err }

// KernelJhash and JhashSeed expose the kernel's hash model to the external
// benchmarks.
var KernelJhash = kernelJhash

const JhashSeed = jhashSeed
