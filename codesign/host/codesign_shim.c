/*
 * The C driver as a shared library for codesign/cshim.py: the callbacks of codesign_shim.h, how to
 * set them, and the compiled model of npu_model.h.
 */
#include "codesign_shim.h"

#include "codesign_npu.h"
#include "npu_model.h"

uint32_t (*codesign_shim_read32)(uintptr_t addr);
void (*codesign_shim_write32)(uintptr_t addr, uint32_t value);
void (*codesign_shim_mem_write)(uintptr_t addr, const void *src, size_t n);
void (*codesign_shim_mem_read)(void *dst, uintptr_t addr, size_t n);
int (*codesign_shim_wait)(void);

void codesign_shim_connect(uint32_t (*read32)(uintptr_t), void (*write32)(uintptr_t, uint32_t),
                           void (*mem_write)(uintptr_t, const void *, size_t),
                           void (*mem_read)(void *, uintptr_t, size_t), int (*wait)(void))
{
    codesign_shim_read32 = read32;
    codesign_shim_write32 = write32;
    codesign_shim_mem_write = mem_write;
    codesign_shim_mem_read = mem_read;
    codesign_shim_wait = wait;
}

const codesign_npu_model *codesign_shim_model(void)
{
    return &codesign_model;
}

size_t codesign_shim_npu_bytes(void)
{
    return sizeof(codesign_npu);
}
