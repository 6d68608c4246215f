/*
 * limits_tz: calendar periods (day, ISO week, month) in a configured time zone.
 *
 * A zone is UTC, a fixed offset ("+05:30"), or an IANA name read from the system's TZif
 * files (/usr/share/zoneinfo; the 64-bit data of version 2+ files). Times after a zone's last
 * listed transition keep its last offset: Debian's files list transitions up to 2037.
 */
#include "layers/limits/limits-int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TZ_MAX_FILE (512 * 1024)
#define TZ_MAX_TRANSITIONS 4096

void limits_tz_free(struct limits_tz *tz)
{
    free(tz->name);
    free(tz->at);
    free(tz->offset);
    memset(tz, 0, sizeof *tz);
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* Parses the version 2+ part of a TZif file (RFC 8536). Returns 0 or -1. */
static int tzif_parse(struct limits_tz *tz, const unsigned char *d, size_t len)
{
    if (len < 44 || memcmp(d, "TZif", 4) != 0 || d[4] < '2')
        return -1;
    /* Skip the version 1 block: its counts say how long it is. */
    uint32_t isut = be32(d + 20), isstd = be32(d + 24), leap = be32(d + 28), timecnt = be32(d + 32),
             typecnt = be32(d + 36), charcnt = be32(d + 40);
    uint64_t v1 =
        (uint64_t)timecnt * 5 + (uint64_t)typecnt * 6 + charcnt + (uint64_t)leap * 8 + isstd + isut;
    if (44 + v1 + 44 > len)
        return -1;
    const unsigned char *h = d + 44 + v1;
    if (memcmp(h, "TZif", 4) != 0)
        return -1;
    isut = be32(h + 20);
    isstd = be32(h + 24);
    leap = be32(h + 28);
    timecnt = be32(h + 32);
    typecnt = be32(h + 36);
    charcnt = be32(h + 40);
    if (typecnt == 0 || typecnt > 256 || timecnt > TZ_MAX_TRANSITIONS)
        return -1;
    uint64_t need = (uint64_t)timecnt * 9 + (uint64_t)typecnt * 6 + charcnt + (uint64_t)leap * 12 +
                    isstd + isut;
    if (44 + v1 + 44 + need > len)
        return -1;
    const unsigned char *times = h + 44, *idx = times + (size_t)timecnt * 8, *types = idx + timecnt;
    tz->at = calloc(timecnt ? timecnt : 1, sizeof *tz->at);
    tz->offset = calloc(timecnt ? timecnt : 1, sizeof *tz->offset);
    if (!tz->at || !tz->offset)
        return -1;
    for (uint32_t i = 0; i < timecnt; i++) {
        if (idx[i] >= typecnt)
            return -1;
        tz->at[i] = be64(times + (size_t)i * 8);
        if (i && tz->at[i] <= tz->at[i - 1])
            return -1;
        tz->offset[i] = (int32_t)be32(types + (size_t)idx[i] * 6);
    }
    tz->first = (int32_t)be32(types);
    tz->n = timecnt;
    if (timecnt == 0)
        tz->fixed = tz->first;
    return 0;
}

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || s[0] == '/' || strstr(s, ".."))
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_+-") == n;
}

int limits_tz_load(struct limits_tz *tz, const char *name, char *why, size_t why_len)
{
    memset(tz, 0, sizeof *tz);
    if (!(tz->name = strdup(name))) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    if (strcmp(name, "UTC") == 0 || strcmp(name, "Z") == 0)
        return 0;
    if ((name[0] == '+' || name[0] == '-') && strlen(name) == 6 && name[3] == ':') {
        int hh = 0, mm = 0;
        for (int i = 1; i < 6; i++)
            if (i != 3 && (name[i] < '0' || name[i] > '9'))
                goto bad_offset;
        hh = (name[1] - '0') * 10 + name[2] - '0';
        mm = (name[4] - '0') * 10 + name[5] - '0';
        if (hh > 14 || mm > 59)
            goto bad_offset;
        tz->fixed = (hh * 3600 + mm * 60) * (name[0] == '-' ? -1 : 1);
        return 0;
    bad_offset:
        snprintf(why, why_len, "\"%s\" is not an offset: write it like +05:30 or -08:00", name);
        limits_tz_free(tz);
        return -1;
    }
    if (!name_ok(name)) {
        snprintf(why, why_len,
                 "\"%.64s\" is not a time zone: write UTC, an offset like +01:00, or an IANA name "
                 "like Europe/Berlin",
                 name);
        limits_tz_free(tz);
        return -1;
    }
    char path[128];
    snprintf(path, sizeof path, "/usr/share/zoneinfo/%s", name);
    FILE *f = fopen(path, "rb");
    unsigned char *buf = malloc(TZ_MAX_FILE);
    size_t len = 0;
    int rc = -1;
    if (f && buf)
        len = fread(buf, 1, TZ_MAX_FILE, f);
    if (len > 0 && len < TZ_MAX_FILE && tzif_parse(tz, buf, len) == 0)
        rc = 0;
    if (f)
        fclose(f);
    free(buf);
    if (rc != 0) {
        snprintf(why, why_len, "the time zone \"%s\" is not known here (no readable %s)", name,
                 path);
        limits_tz_free(tz);
    }
    return rc;
}

int32_t limits_tz_offset(const struct limits_tz *tz, int64_t utc)
{
    if (tz->n == 0)
        return tz->fixed;
    if (utc < tz->at[0])
        return tz->first;
    size_t lo = 0, hi = tz->n; /* the last transition at or before utc is in [lo, hi) */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->at[mid] <= utc)
            lo = mid;
        else
            hi = mid;
    }
    return tz->offset[lo];
}

/* Days since 1970-01-01 of a proleptic Gregorian date, and back (after H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* The UTC instant of a local wall time (the offset in force there; twice to settle at DST). */
static int64_t local_to_utc(const struct limits_tz *tz, int64_t local)
{
    int64_t u = local - limits_tz_offset(tz, local);
    return local - limits_tz_offset(tz, u);
}

void limits_period_of(const struct limits_tz *tz, enum limits_period p, int64_t now, int64_t *id,
                      int64_t *end)
{
    int64_t local = now + limits_tz_offset(tz, now);
    int64_t days = floor_div(local, 86400);
    int64_t end_days;
    switch (p) {
    case LIMITS_PERIOD_WEEK: {
        /* 1970-01-01 was a Thursday; ISO weeks start on Monday. */
        int64_t wd = ((days + 3) % 7 + 7) % 7;
        *id = days - wd;
        end_days = *id + 7;
        break;
    }
    case LIMITS_PERIOD_MONTH: {
        int64_t y;
        unsigned m;
        civil_from_days(days, &y, &m);
        *id = y * 12 + (m - 1);
        end_days = m == 12 ? days_from_civil(y + 1, 1, 1) : days_from_civil(y, m + 1, 1);
        break;
    }
    default:
        *id = days;
        end_days = days + 1;
        break;
    }
    *end = local_to_utc(tz, end_days * 86400);
    if (*end <= now)
        *end = now + 1;
}
