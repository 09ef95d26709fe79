/*
 * rsim_pm.h — the remote's side of the suspend/resume handshake (mailbox version 2).
 *
 * The host asks the firmware to suspend (auto: runtime PM after idling; system: the host
 * itself suspends). The firmware answers ACK once it has quiesced — the board then stops its
 * clock at the next instruction boundary, normally the WAIT or wfi that follows — or CANCEL,
 * and the host's suspend fails while the firmware runs on. After a resume from an acknowledged
 * suspension, PM_STATUS.RESUMED is set and WAIT returns once.
 *
 * rsim_rpmsg_wait_and_poll() calls rsim_pm_poll() after each wake-up; firmware with its own
 * main loop calls it after each WAIT/wfi.
 */
#ifndef RSIM_PM_H
#define RSIM_PM_H

#include <stdint.h>

enum rsim_pm_request { RSIM_PM_NONE = 0, RSIM_PM_AUTO = 1, RSIM_PM_SYSTEM = 2 };
enum rsim_pm_answer { RSIM_PM_ACK = 1, RSIM_PM_CANCEL = 2 };

/* Decides the answer to a request: the application's veto. */
typedef enum rsim_pm_answer (*rsim_pm_decide_fn)(enum rsim_pm_request request, void *priv);
/* Told after the core runs again following an acknowledged suspension. */
typedef void (*rsim_pm_resumed_fn)(void *priv);

/* Take part in the handshake. `decide` may be 0 (acknowledge every request);
 * `resumed` may be 0. Without this call the host gates the clock unasked. */
void rsim_pm_enable(rsim_pm_decide_fn decide, rsim_pm_resumed_fn resumed, void *priv);

/* Stop taking part (PM_CONTROL cleared). */
void rsim_pm_disable(void);

/* Answers a request that waits, reports a resume. Returns a bit set:
 * 1 a request was answered, 2 a resume was seen. Cheap when nothing happened;
 * does nothing until rsim_pm_enable. */
int rsim_pm_poll(void);

/* Requests acknowledged, cancelled, and resumes seen since start. */
struct rsim_pm_counts { uint32_t acked, cancelled, resumed; };
struct rsim_pm_counts rsim_pm_counts(void);

#endif /* RSIM_PM_H */
