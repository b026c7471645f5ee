/*
 * crc32c — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * checksum of WAL records. Internal to the raft module.
 *
 * The value is the finished CRC (pre- and post-inverted inside), so runs
 * chain: crc32c_extend(crc32c_extend(0, a), b) == crc32c_extend(0, a ‖ b),
 * and crc32c_extend(0, "123456789", 9) == 0xE3069283.
 *
 * Threading: pure functions, callable from any thread.
 */
#ifndef CETCD_CRC32C_H
#define CETCD_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends `crc` (0 to start) over `len` bytes at `buf`. Uses the SSE4.2
 * crc32 instruction when the CPU has it, a table otherwise. */
uint32_t crc32c_extend(uint32_t crc, const void *buf, size_t len);

/* The two implementations behind crc32c_extend(), exposed for tests.
 * crc32c_extend_hw() may only be called when crc32c_hw_available(). */
uint32_t crc32c_extend_sw(uint32_t crc, const void *buf, size_t len);
uint32_t crc32c_extend_hw(uint32_t crc, const void *buf, size_t len);
int crc32c_hw_available(void);

#endif
