/*
 * base64: the digits both alphabets share (RFC 4648 §4 standard, §5 URL-safe), for the
 * decoders that differ in what else they accept (JWS's unpadded base64url, the padded
 * standard form of MCP header values, the lenient forms the safety layer reads).
 */
#ifndef GW_LIB_BASE64_H
#define GW_LIB_BASE64_H

/* The value of a letter or digit (0..61), or -1 for anything else. */
static inline int gw_b64_alnum(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return -1;
}

/* Each alphabet's 64 digits, for encoders. */
#define GW_B64_STD_DIGITS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
#define GW_B64_URL_DIGITS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

#endif
