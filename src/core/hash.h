/* FNV-1a over bytes: to compare what ranks hold (weights, settings, data) and to derive
 * run seeds from pattern names. Not for security. */
#ifndef BNECK_CORE_HASH_H
#define BNECK_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

/* The starting value. It is one digit short of FNV's published offset basis
 * (14695981039346656037): kept, since every sweep's run seeds derive from it. */
#define HASH_START 1469598103934665603ULL

/* The hash of bytes appended to what hash already covers (HASH_START for none). */
uint64_t hash_bytes(uint64_t hash, const void *data, size_t bytes);

#endif
