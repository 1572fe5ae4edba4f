/*
 * codesign NPU driver (C99, freestanding). See codesign_npu.h for the calls and for the macros
 * that give it its hardware access; the defaults below are plain volatile accesses.
 */
#ifdef CODESIGN_NPU_CONFIG
#include CODESIGN_NPU_CONFIG
#endif

#include "codesign_npu.h"
#include "npu_regs.h"

#ifndef CODESIGN_NPU_READ32
#define CODESIGN_NPU_READ32(addr) (*(const volatile uint32_t *)(addr))
#endif
#ifndef CODESIGN_NPU_WRITE32
#define CODESIGN_NPU_WRITE32(addr, value) (*(volatile uint32_t *)(addr) = (value))
#endif
#ifndef CODESIGN_NPU_MEM_WRITE
#define CODESIGN_NPU_MEM_WRITE(addr, src, n) codesign_npu_copy_to((addr), (src), (n))
/* Byte by byte through a volatile pointer: the compiler may neither drop the stores nor turn the
 * loop into a memcpy call, which a freestanding program need not have. */
static void codesign_npu_copy_to(uintptr_t addr, const void *src, size_t n)
{
    volatile uint8_t *d = (volatile uint8_t *)addr;
    const uint8_t *s = (const uint8_t *)src;
    size_t i;
    for (i = 0; i < n; i++) {
        d[i] = s[i];
    }
}
#endif
#ifndef CODESIGN_NPU_MEM_READ
#define CODESIGN_NPU_MEM_READ(dst, addr, n) codesign_npu_copy_from((dst), (addr), (n))
static void codesign_npu_copy_from(void *dst, uintptr_t addr, size_t n)
{
    const volatile uint8_t *s = (const volatile uint8_t *)addr;
    uint8_t *d = (uint8_t *)dst;
    size_t i;
    for (i = 0; i < n; i++) {
        d[i] = s[i];
    }
}
#endif
#ifndef CODESIGN_NPU_SYNC_FOR_DEVICE
#define CODESIGN_NPU_SYNC_FOR_DEVICE(addr, n) ((void)(addr), (void)(n))
#endif
#ifndef CODESIGN_NPU_SYNC_FOR_CPU
#define CODESIGN_NPU_SYNC_FOR_CPU(addr, n) ((void)(addr), (void)(n))
#endif
#ifndef CODESIGN_NPU_WAIT_HOOK
#define CODESIGN_NPU_WAIT_HOOK(npu) ((void)(npu))
#endif

/* Bytes packed or unpacked per memory access (a buffer on the stack, no allocation). */
#define CODESIGN_NPU_CHUNK 64u

static uint32_t reg_read(const codesign_npu *npu, uint32_t offset)
{
    return CODESIGN_NPU_READ32(npu->regs + offset);
}

static void reg_write(const codesign_npu *npu, uint32_t offset, uint32_t value)
{
    CODESIGN_NPU_WRITE32(npu->regs + offset, value);
}

static int is_busy(const codesign_npu *npu)
{
    return (reg_read(npu, CODESIGN_NPU_CTRL) & CODESIGN_NPU_CTRL_BUSY_MASK) != 0;
}

int codesign_npu_init(codesign_npu *npu, uintptr_t regs, uintptr_t mem, size_t mem_bytes,
                      uint32_t bus_address)
{
    if (npu == 0) {
        return CODESIGN_NPU_ERR_ARG;
    }
    npu->regs = regs;
    npu->mem = mem;
    npu->mem_bytes = mem_bytes;
    npu->bus_address = bus_address;
    npu->model = 0;
    npu->irq_done = 0;
    if (bus_address & ~CODESIGN_NPU_BASE_ADDR_MASK) {
        return CODESIGN_NPU_ERR_ALIGN;
    }
    if (reg_read(npu, CODESIGN_NPU_VERSION) != CODESIGN_NPU_EXPECTED_VERSION) {
        return CODESIGN_NPU_ERR_VERSION;
    }
    if (reg_read(npu, CODESIGN_NPU_CONFIG_ID) != CODESIGN_NPU_EXPECTED_CONFIG_ID) {
        return CODESIGN_NPU_ERR_CONFIG;
    }
    reg_write(npu, CODESIGN_NPU_IRQ_ENABLE, 0);
    reg_write(npu, CODESIGN_NPU_IRQ_STATUS, CODESIGN_NPU_IRQ_STATUS_DONE_MASK);
    return CODESIGN_NPU_OK;
}

int codesign_npu_load(codesign_npu *npu, const codesign_npu_model *model)
{
    if (npu == 0 || model == 0) {
        return CODESIGN_NPU_ERR_ARG;
    }
    if (model->config_id != CODESIGN_NPU_EXPECTED_CONFIG_ID
        || model->bus_bytes != CODESIGN_NPU_BUS_BYTES) {
        return CODESIGN_NPU_ERR_CONFIG;
    }
    if (model->memory_bytes > npu->mem_bytes || model->image_bytes > model->memory_bytes) {
        return CODESIGN_NPU_ERR_MEMORY;
    }
    if (is_busy(npu)) {
        return CODESIGN_NPU_ERR_BUSY;
    }
    npu->model = 0;     /* no half-loaded model may run */
    CODESIGN_NPU_MEM_WRITE(npu->mem, model->image, model->image_bytes);
    CODESIGN_NPU_SYNC_FOR_DEVICE(npu->mem, model->image_bytes);
    reg_write(npu, CODESIGN_NPU_BASE, npu->bus_address);
    reg_write(npu, CODESIGN_NPU_PROG_BASE, model->prog_base);
    npu->model = model;
    return CODESIGN_NPU_OK;
}

/* The region `index` of `count`, or 0. */
static const codesign_npu_region *region_at(const codesign_npu_region *regions, uint32_t count,
                                            uint32_t index)
{
    return index < count ? &regions[index] : 0;
}

/* Byte `j` of stored pixel (y, x) of input region `r` holding the HWC tensor `v`. */
static uint8_t stored_byte(const codesign_npu_region *r, const uint8_t *v, uint32_t y,
                           uint32_t x, uint32_t j)
{
    uint32_t window, ky, kx, c;
    int32_t iy, ix;
    if (j >= r->stored_channels) {
        return 0;
    }
    if (!r->unfolded) {
        return v[((size_t)y * r->width + x) * r->channels + j];
    }
    /* Unfolded (im2col): byte j is channel c of kernel position (ky, kx) of the window of
     * output pixel (y, x), in (ky, kx, c) order. */
    window = r->kw * r->channels;
    ky = j / window;
    kx = (j % window) / r->channels;
    c = j % r->channels;
    iy = (int32_t)(y * r->stride_h + ky) - (int32_t)r->pad_top;
    ix = (int32_t)(x * r->stride_w + kx) - (int32_t)r->pad_left;
    if (iy < 0 || ix < 0 || iy >= (int32_t)r->height || ix >= (int32_t)r->width) {
        return (uint8_t)r->pad;
    }
    return v[((size_t)iy * r->width + (uint32_t)ix) * r->channels + c];
}

int codesign_npu_write_input(codesign_npu *npu, uint32_t index, const void *data, size_t bytes)
{
    const codesign_npu_region *r;
    const uint8_t *v = (const uint8_t *)data;
    uint8_t chunk[CODESIGN_NPU_CHUNK];
    uintptr_t addr;
    uint32_t y, x, j, fill = 0;
    if (npu == 0 || data == 0) {
        return CODESIGN_NPU_ERR_ARG;
    }
    if (npu->model == 0) {
        return CODESIGN_NPU_ERR_NO_MODEL;
    }
    r = region_at(npu->model->inputs, npu->model->n_inputs, index);
    if (r == 0) {
        return CODESIGN_NPU_ERR_ARG;
    }
    if (r->flatten_chw) {
        return CODESIGN_NPU_ERR_LAYOUT;
    }
    if (bytes != (size_t)r->height * r->width * r->channels) {
        return CODESIGN_NPU_ERR_SIZE;
    }
    if (is_busy(npu)) {
        return CODESIGN_NPU_ERR_BUSY;
    }
    addr = npu->mem + r->offset;
    for (y = 0; y < r->stored_height; y++) {
        for (x = 0; x < r->stored_width; x++) {
            for (j = 0; j < r->pixel_bytes; j++) {
                chunk[fill++] = stored_byte(r, v, y, x, j);
                if (fill == CODESIGN_NPU_CHUNK) {
                    CODESIGN_NPU_MEM_WRITE(addr, chunk, fill);
                    addr += fill;
                    fill = 0;
                }
            }
        }
    }
    if (fill) {
        CODESIGN_NPU_MEM_WRITE(addr, chunk, fill);
    }
    CODESIGN_NPU_SYNC_FOR_DEVICE(npu->mem + r->offset, r->bytes);
    return CODESIGN_NPU_OK;
}

int codesign_npu_start(codesign_npu *npu)
{
    if (npu == 0) {
        return CODESIGN_NPU_ERR_ARG;
    }
    if (npu->model == 0) {
        return CODESIGN_NPU_ERR_NO_MODEL;
    }
    if (is_busy(npu)) {
        return CODESIGN_NPU_ERR_BUSY;
    }
    npu->irq_done = 0;
    reg_write(npu, CODESIGN_NPU_CTRL, CODESIGN_NPU_CTRL_START_MASK);
    return CODESIGN_NPU_OK;
}

int codesign_npu_wait(codesign_npu *npu, uint32_t max_polls)
{
    uint32_t i, ctrl;
    if (npu == 0) {
        return CODESIGN_NPU_ERR_ARG;
    }
    for (i = 0; i < max_polls; i++) {
        ctrl = reg_read(npu, CODESIGN_NPU_CTRL);
        if ((ctrl & CODESIGN_NPU_CTRL_DONE_MASK) && !(ctrl & CODESIGN_NPU_CTRL_BUSY_MASK)) {
            return CODESIGN_NPU_OK;
        }
    }
    return CODESIGN_NPU_ERR_TIMEOUT;
}

int codesign_npu_irq_enable(codesign_npu *npu, int enable)
{
    if (npu == 0) {
        return CODESIGN_NPU_ERR_ARG;
    }
    reg_write(npu, CODESIGN_NPU_IRQ_STATUS, CODESIGN_NPU_IRQ_STATUS_DONE_MASK);
    npu->irq_done = 0;
    reg_write(npu, CODESIGN_NPU_IRQ_ENABLE, enable ? CODESIGN_NPU_IRQ_ENABLE_DONE_MASK : 0u);
    return CODESIGN_NPU_OK;
}

int codesign_npu_isr(codesign_npu *npu)
{
    if (npu == 0 || !(reg_read(npu, CODESIGN_NPU_IRQ_STATUS) & CODESIGN_NPU_IRQ_STATUS_DONE_MASK)) {
        return 0;
    }
    reg_write(npu, CODESIGN_NPU_IRQ_STATUS, CODESIGN_NPU_IRQ_STATUS_DONE_MASK);
    npu->irq_done = 1;
    return 1;
}

int codesign_npu_wait_irq(codesign_npu *npu, uint32_t max_waits)
{
    uint32_t i;
    if (npu == 0) {
        return CODESIGN_NPU_ERR_ARG;
    }
    for (i = 0; !npu->irq_done; i++) {
        if (i == max_waits) {
            return CODESIGN_NPU_ERR_TIMEOUT;
        }
        CODESIGN_NPU_WAIT_HOOK(npu);
    }
    return CODESIGN_NPU_OK;
}

int codesign_npu_read_output(codesign_npu *npu, uint32_t index, void *data, size_t bytes)
{
    const codesign_npu_region *r;
    uint8_t *out = (uint8_t *)data;
    uint8_t chunk[CODESIGN_NPU_CHUNK];
    uint32_t pos, n, k, y = 0, x = 0, j = 0;
    if (npu == 0 || data == 0) {
        return CODESIGN_NPU_ERR_ARG;
    }
    if (npu->model == 0) {
        return CODESIGN_NPU_ERR_NO_MODEL;
    }
    r = region_at(npu->model->outputs, npu->model->n_outputs, index);
    if (r == 0) {
        return CODESIGN_NPU_ERR_ARG;
    }
    if (r->unfolded) {
        return CODESIGN_NPU_ERR_LAYOUT;
    }
    if (bytes != (size_t)r->height * r->width * r->channels) {
        return CODESIGN_NPU_ERR_SIZE;
    }
    if (is_busy(npu)) {
        return CODESIGN_NPU_ERR_BUSY;
    }
    CODESIGN_NPU_SYNC_FOR_CPU(npu->mem + r->offset, r->bytes);
    for (pos = 0; pos < r->bytes; pos += n) {
        n = r->bytes - pos < CODESIGN_NPU_CHUNK ? r->bytes - pos : CODESIGN_NPU_CHUNK;
        CODESIGN_NPU_MEM_READ(chunk, npu->mem + r->offset + pos, n);
        for (k = 0; k < n; k++) {
            if (j < r->channels) {      /* the rest of the pixel is channel padding */
                out[r->flatten_chw ? ((size_t)j * r->height + y) * r->width + x
                                   : ((size_t)y * r->width + x) * r->channels + j] = chunk[k];
            }
            if (++j == r->pixel_bytes) {
                j = 0;
                if (++x == r->width) {
                    x = 0;
                    y++;
                }
            }
        }
    }
    return CODESIGN_NPU_OK;
}

uint32_t codesign_npu_cycles(const codesign_npu *npu)
{
    return (reg_read(npu, CODESIGN_NPU_CYCLES) & CODESIGN_NPU_CYCLES_COUNT_MASK)
           >> CODESIGN_NPU_CYCLES_COUNT_SHIFT;
}

const char *codesign_npu_strerror(int error)
{
    switch (error) {
    case CODESIGN_NPU_OK: return "success";
    case CODESIGN_NPU_ERR_ARG: return "invalid argument";
    case CODESIGN_NPU_ERR_VERSION: return "the NPU's VERSION is not this driver's";
    case CODESIGN_NPU_ERR_CONFIG: return "the NPU's CONFIG_ID is not the model's";
    case CODESIGN_NPU_ERR_ALIGN: return "the memory's bus address is not 4 KiB aligned";
    case CODESIGN_NPU_ERR_MEMORY: return "the memory is too small for the model";
    case CODESIGN_NPU_ERR_SIZE: return "the tensor buffer has the wrong size";
    case CODESIGN_NPU_ERR_LAYOUT: return "the tensor cannot be accessed in that direction";
    case CODESIGN_NPU_ERR_NO_MODEL: return "no model loaded";
    case CODESIGN_NPU_ERR_BUSY: return "the NPU is running";
    case CODESIGN_NPU_ERR_TIMEOUT: return "the run did not finish in time";
    default: return "unknown error";
    }
}
