// TL_TEST_UNDER_ASAN is defined in a build under AddressSanitizer (make test-asan; GCC says
// so with __SANITIZE_ADDRESS__, clang with __has_feature): for the tests whose setting it
// changes (an address-space cap, memory bounds, who handles a fatal signal).
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define TL_TEST_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TL_TEST_UNDER_ASAN 1
#endif
#endif
