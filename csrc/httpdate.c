/* One cached IMF-fixdate string; time(2) is a vDSO call, so checking it per response is cheap. */
#include <stdio.h>
#include <time.h>
#include "httpdate.h"

static const char *const DAYS[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const MONTHS[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static char cached[FASTGW_HTTP_DATE_LEN + 1];
static time_t cached_at = (time_t)-1;

const char *fastgw_http_date(void)
{
    time_t now = time(NULL);
    if (now != cached_at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        snprintf(cached, sizeof cached, "%s, %02d %s %04d %02d:%02d:%02d GMT",
                 DAYS[tm.tm_wday], tm.tm_mday, MONTHS[tm.tm_mon], tm.tm_year + 1900,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_at = now;
    }
    return cached;
}
