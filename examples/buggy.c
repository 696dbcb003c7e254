/* buggy.c: the demo program for retrograde.
 *
 * The audit finds a balance nobody posted: the sign-up form allows names of
 * up to MAX_NAME - 1 characters, but struct account has room for 7, so
 * copy_name() writes "Maximilian" (10 long) through `name` into `balance`.
 *
 *   line 29: the write that corrupts acct->balance (copy_name, i = 8 and 9)
 *   line 52: the audit that detects it (reached only when the balance is wrong)
 *
 * Demo: break at line 52, `watch -l acct->balance`, `reverse-continue`: gdb
 * stops at line 29 with i = 9 (Old value = 28257, New value = 865), called
 * from rename_account(acct, "Maximilian") in main at line 69.
 */
#include <stdio.h>
#include <stdlib.h>

#define MAX_NAME 16 /* what the sign-up form accepts, terminator included */

struct account {
    char name[8];
    long balance;
};

static void copy_name(char *dst, const char *src)
{
    size_t i;

    for (i = 0; i < MAX_NAME - 1 && src[i] != '\0'; i++)
        dst[i] = src[i];
    dst[i] = '\0';
}

static void set_display_name(struct account *acct, const char *name)
{
    copy_name(acct->name, name);
}

static void rename_account(struct account *acct, const char *name)
{
    set_display_name(acct, name);
}

static void post(struct account *acct, long *ledger, long amount)
{
    acct->balance += amount;
    *ledger += amount;
}

static int audit(const struct account *acct, long ledger)
{
    if (acct->balance != ledger) {
        printf("audit: %s has balance %ld, but the ledger says %ld\n",
               acct->name, acct->balance, ledger);
        return 1;
    }
    printf("audit: %s balances at %ld\n", acct->name, acct->balance);
    return 0;
}

int main(void)
{
    struct account *acct = calloc(1, sizeof *acct);
    long ledger = 0;

    rename_account(acct, "Max");
    post(acct, &ledger, 1000);
    post(acct, &ledger, 250);
    post(acct, &ledger, -400);
    rename_account(acct, "Maximilian");
    int status = audit(acct, ledger);
    free(acct);
    return status;
}
