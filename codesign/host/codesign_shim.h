/*
 * Hardware access of the C driver through function pointers (codesign/cshim.py loads the driver
 * built with this header as CODESIGN_NPU_CONFIG and points them at Python objects: a model of the
 * NPU, or a simulation of its RTL). Addresses are those the driver computes from the `regs` and
 * `mem` given to codesign_npu_init.
 */
#ifndef CODESIGN_SHIM_H
#define CODESIGN_SHIM_H

#include <stddef.h>
#include <stdint.h>

extern uint32_t (*codesign_shim_read32)(uintptr_t addr);
extern void (*codesign_shim_write32)(uintptr_t addr, uint32_t value);
extern void (*codesign_shim_mem_write)(uintptr_t addr, const void *src, size_t n);
extern void (*codesign_shim_mem_read)(void *dst, uintptr_t addr, size_t n);
/* Wait for an interrupt; nonzero if the NPU's irq line is high (the shim then runs the ISR). */
extern int (*codesign_shim_wait)(void);

#define CODESIGN_NPU_READ32(addr) codesign_shim_read32(addr)
#define CODESIGN_NPU_WRITE32(addr, value) codesign_shim_write32((addr), (value))
#define CODESIGN_NPU_MEM_WRITE(addr, src, n) codesign_shim_mem_write((addr), (src), (n))
#define CODESIGN_NPU_MEM_READ(dst, addr, n) codesign_shim_mem_read((dst), (addr), (n))
#define CODESIGN_NPU_WAIT_HOOK(npu) \
    do { if (codesign_shim_wait()) { (void)codesign_npu_isr(npu); } } while (0)

#endif /* CODESIGN_SHIM_H */
