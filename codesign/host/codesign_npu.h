/*
 * codesign NPU driver (C99, freestanding: only <stdint.h> and <stddef.h>).
 *
 * Runs a model compiled by `codesign generate` on the NPU. The design directory holds, beside
 * this file and codesign_npu.c:
 *   npu_regs.h   the register map of that NPU (generated from codesign/isa.py);
 *   npu_model.h  the memory image and the input/output layouts (`codesign_model`).
 *
 * Use:
 *   codesign_npu npu;
 *   codesign_npu_init(&npu, REGS_ADDRESS, (uintptr_t)buffer, sizeof buffer, BUFFER_BUS_ADDRESS);
 *   codesign_npu_load(&npu, &codesign_model);
 *   codesign_npu_write_input(&npu, 0, x, sizeof x);     (HWC, one byte per value)
 *   codesign_npu_start(&npu);
 *   codesign_npu_wait(&npu, 100000000u);                 (or irq_enable + wait_irq)
 *   codesign_npu_read_output(&npu, 0, y, sizeof y);
 *
 * Every call returns CODESIGN_NPU_OK (0) or a negative error code; none asserts or allocates.
 *
 * Hardware access goes through macros that codesign_npu.c defines unless they are defined
 * already (on the compiler's command line, or in a header named by CODESIGN_NPU_CONFIG, e.g.
 * -DCODESIGN_NPU_CONFIG='"my_npu_config.h"'):
 *   CODESIGN_NPU_READ32(addr)            a register read; addr = regs + byte offset
 *   CODESIGN_NPU_WRITE32(addr, value)    a register write
 *   CODESIGN_NPU_MEM_WRITE(addr, src, n) copy n bytes from src to the NPU's memory at CPU
 *                                        address addr (= mem + offset from BASE)
 *   CODESIGN_NPU_MEM_READ(dst, addr, n)  copy n bytes of the NPU's memory to dst
 *   CODESIGN_NPU_SYNC_FOR_DEVICE(addr, n) make CPU writes visible to the NPU (cache clean);
 *                                        default: nothing
 *   CODESIGN_NPU_SYNC_FOR_CPU(addr, n)   make NPU writes visible to the CPU (cache invalidate);
 *                                        default: nothing
 *   CODESIGN_NPU_WAIT_HOOK(npu)          what codesign_npu_wait_irq does while the run is not
 *                                        done (e.g. a WFI instruction); default: nothing
 * The defaults are volatile accesses at the given addresses.
 */
#ifndef CODESIGN_NPU_H
#define CODESIGN_NPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes (negative; CODESIGN_NPU_OK is 0). */
#define CODESIGN_NPU_OK 0
#define CODESIGN_NPU_ERR_ARG (-1)        /* a null pointer or an index out of range */
#define CODESIGN_NPU_ERR_VERSION (-2)    /* VERSION is not this driver's NPU (shape, bus, ISA) */
#define CODESIGN_NPU_ERR_CONFIG (-3)     /* CONFIG_ID differs: another NPU configuration */
#define CODESIGN_NPU_ERR_ALIGN (-4)      /* the memory's bus address is not 4 KiB aligned */
#define CODESIGN_NPU_ERR_MEMORY (-5)     /* the memory is too small for the model */
#define CODESIGN_NPU_ERR_SIZE (-6)       /* a tensor buffer of the wrong size */
#define CODESIGN_NPU_ERR_LAYOUT (-7)     /* writing a flattened view / reading an unfolded one */
#define CODESIGN_NPU_ERR_NO_MODEL (-8)   /* no model loaded */
#define CODESIGN_NPU_ERR_BUSY (-9)       /* the NPU is running */
#define CODESIGN_NPU_ERR_TIMEOUT (-10)   /* the run did not finish within the bound */

/* An activation tensor in the NPU's memory (see codesign/compiler/program.py, Region):
 * stored_height x stored_width pixels of pixel_bytes bytes each, from byte `offset`; the first
 * stored_channels bytes of a pixel are values, the rest zero padding. With `unfolded` the host
 * writes each output pixel's kh x kw x channels window of the input (im2col, (ky, kx, c) order,
 * `pad` outside the input); with `flatten_chw` the model sees the tensor flattened in CHW order. */
typedef struct codesign_npu_region {
    uint32_t offset;            /* byte offset from external word 0 */
    uint32_t bytes;             /* bytes it occupies */
    uint32_t height, width, channels;                       /* the model's HWC shape */
    uint32_t stored_height, stored_width, stored_channels;  /* as laid out in memory */
    uint32_t pixel_bytes;       /* bytes per stored pixel (channel words x ACT word bytes) */
    uint32_t is_signed;         /* int8 (1) or uint8 (0) values */
    uint32_t flatten_chw;
    uint32_t unfolded;
    uint32_t kh, kw, stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right;
    uint32_t pad;               /* the byte written at padding positions of an unfolded input */
} codesign_npu_region;

/* A compiled model (npu_model.h defines `codesign_model`). */
typedef struct codesign_npu_model {
    const uint8_t *image;       /* the memory image, external word 0 first */
    uint32_t image_bytes;
    uint32_t prog_base;         /* word address of the first instruction */
    uint32_t memory_bytes;      /* memory the model needs: image and activation buffers */
    uint32_t config_id;         /* CONFIG_ID of the NPU it was compiled for */
    uint32_t bus_bytes;
    const codesign_npu_region *inputs;
    uint32_t n_inputs;
    const codesign_npu_region *outputs;
    uint32_t n_outputs;
} codesign_npu_model;

/* One NPU and the memory it sees at BASE. */
typedef struct codesign_npu {
    uintptr_t regs;             /* CPU address of the register block */
    uintptr_t mem;              /* CPU address of the NPU's memory (its external word 0) */
    size_t mem_bytes;
    uint32_t bus_address;       /* the same memory's address on the NPU's bus (BASE) */
    const codesign_npu_model *model;
    volatile uint32_t irq_done; /* set by codesign_npu_isr */
} codesign_npu;

/* Check the NPU at `regs` (VERSION and CONFIG_ID against npu_regs.h), reset its interrupt state
 * and remember the memory it is to use: `mem_bytes` bytes at CPU address `mem`, which the NPU
 * reaches at `bus_address` (4 KiB aligned). */
int codesign_npu_init(codesign_npu *npu, uintptr_t regs, uintptr_t mem, size_t mem_bytes,
                      uint32_t bus_address);
/* Copy the model's image into the NPU's memory and set BASE and PROG_BASE. */
int codesign_npu_load(codesign_npu *npu, const codesign_npu_model *model);
/* Write input `index`: height x width x channels values (HWC, one byte each, int8 or uint8 as
 * the model says), packed as the NPU reads them (channel padding, unfolding). */
int codesign_npu_write_input(codesign_npu *npu, uint32_t index, const void *data, size_t bytes);
/* Start a run (ERR_BUSY while one is running). */
int codesign_npu_start(codesign_npu *npu);
/* Poll CTRL until the run is done, at most `max_polls` reads (ERR_TIMEOUT after). */
int codesign_npu_wait(codesign_npu *npu, uint32_t max_polls);
/* Interrupt on completion (enable != 0) or not; clears a pending one either way. */
int codesign_npu_irq_enable(codesign_npu *npu, int enable);
/* The interrupt handler's part: returns 1 (and clears the interrupt) if the NPU raised it. */
int codesign_npu_isr(codesign_npu *npu);
/* Wait until codesign_npu_isr has seen the run's end, calling CODESIGN_NPU_WAIT_HOOK(npu) at most
 * `max_waits` times (ERR_TIMEOUT after). */
int codesign_npu_wait_irq(codesign_npu *npu, uint32_t max_waits);
/* Read output `index` (HWC, or CHW-flattened for a flattened output), one byte per value. */
int codesign_npu_read_output(codesign_npu *npu, uint32_t index, void *data, size_t bytes);
/* Clock cycles of the last run (CYCLES). */
uint32_t codesign_npu_cycles(const codesign_npu *npu);
/* A short description of an error code. */
const char *codesign_npu_strerror(int error);

#ifdef __cplusplus
}
#endif

#endif /* CODESIGN_NPU_H */
