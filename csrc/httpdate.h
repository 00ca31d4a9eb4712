/* The HTTP Date header value (RFC 9110 IMF-fixdate), formatted at most once a second. */
#ifndef FASTGW_HTTPDATE_H
#define FASTGW_HTTPDATE_H

#define FASTGW_HTTP_DATE_LEN 29

/* Returns a pointer to FASTGW_HTTP_DATE_LEN bytes (not NUL-terminated) valid until the next call. */
const char *fastgw_http_date(void);

#endif
