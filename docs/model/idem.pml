/*
 * docs/model/idem.pml -- Idem's store protocol for one key, in Promela.
 *
 * Models claim / complete / fail / extend / takeover / TTL expiry / delete
 * with fencing tokens drawn from a floor that survives deletes, WORKERS
 * concurrent workers and an environment that injects a bounded number of
 * faults (crashes, freezes past the lease, handler failures, expiries,
 * deletes). docs/model/README.md maps every step to the code and explains
 * how to run it; tools/check-model.sh runs it (ctest entry model_spin).
 *
 * Safety (assertions, checked in every run):
 *   no stale overwrite    complete/fail/extend only succeed for the worker
 *                         that holds the key's current token
 *   COMPLETED stays       no write other than delete/expiry leaves COMPLETED
 *   tokens increase       every token handed out is above every earlier one,
 *                         across the key's lives (after delete and expiry)
 * Safety (LTL one_holder): at most one worker holds a live lease.
 * Liveness (LTL completes, with weak fairness): worker 0 never crashes, so
 * once the faults are spent it sees the event completed or terminally failed.
 *
 * Planted bugs (each must make spin report an error; see check-model.sh):
 *   -DBREAK_TOKEN_CHECK  complete/fail/extend do not compare the token
 *   -DBREAK_FLOOR        delete does not raise the floor: tokens repeat
 *   -DBREAK_LEASE_CHECK  claim takes a PROCESSING key over with a live lease
 */

#ifndef WORKERS
#define WORKERS 3
#endif
#ifndef FAULTS
#define FAULTS 3
#endif
#define NOBODY 255

mtype = { ABSENT, PROCESSING, COMPLETED, FAILED_RETRY, FAILED_TERMINAL };  /* record status */
mtype = { ACQUIRED, IN_PROGRESS, DONE, FAILED, OK, LEASE_LOST };            /* answers */

/* The record of the key, as the store keeps it. */
mtype status = ABSENT;
byte token = 0;     /* current token; an expired record keeps it, a deleted one does not */
bool lease = false; /* the current owner's lease is live */
byte floor = 0;     /* highest token of any deleted record: survives deletes */

/* Ghost state, for the properties only. */
byte issued = 0;          /* the highest token any claim handed out */
byte owner = NOBODY;      /* the worker the current token was handed to */
bool orphan = false;      /* the current owner crashed */
byte wtok[WORKERS];       /* the token each worker works under (0: none) */
bool wlive[WORKERS];      /* the worker's lease has not run out */
byte faults = 0;
bool acked0 = false;      /* worker 0 acknowledged the event */

#ifdef BREAK_TOKEN_CHECK
#define fenced(t) (status == PROCESSING)
#else
#define fenced(t) (status == PROCESSING && token == (t))
#endif

#ifdef BREAK_LEASE_CHECK
#define expired (true)
#else
#define expired (!lease)
#endif

#define fault_left (faults < FAULTS)

/* claim: one atomic step that acquires (new, takeover, retry) or reports
 * the record as it stands. */
inline claim(w, r) {
  atomic {
    if
    :: status == ABSENT || (status == PROCESSING && expired) || status == FAILED_RETRY ->
       if
       :: token > floor -> token = token + 1
       :: token <= floor -> token = floor + 1
       fi;
       assert(token > issued);  /* tokens strictly increase across the key's lives */
       issued = token;
       status = PROCESSING;
       lease = true;
       owner = w;
       orphan = false;
       wtok[w] = token;
       wlive[w] = true;
       r = ACQUIRED
    :: status == PROCESSING && !expired -> r = IN_PROGRESS
    :: status == COMPLETED -> r = DONE
    :: status == FAILED_TERMINAL -> r = FAILED
    fi
  }
}

/* complete / fail / extend: fenced writes by the token's owner only. */
inline complete(w, r) {
  atomic {
    if
    :: fenced(wtok[w]) ->
       assert(owner == w);            /* no stale overwrite */
       assert(status != COMPLETED);   /* COMPLETED is never overwritten */
       status = COMPLETED;
       lease = false;
       wlive[w] = false;
       r = OK
    :: !fenced(wtok[w]) -> r = LEASE_LOST
    fi
  }
}

inline fail(w, terminal, r) {
  atomic {
    if
    :: fenced(wtok[w]) ->
       assert(owner == w);
       assert(status != COMPLETED);
       if
       :: terminal -> status = FAILED_TERMINAL
       :: !terminal -> status = FAILED_RETRY
       fi;
       lease = false;
       wlive[w] = false;
       r = OK
    :: !fenced(wtok[w]) -> r = LEASE_LOST
    fi
  }
}

inline extend(w, r) {
  atomic {
    if
    :: fenced(wtok[w]) ->
       assert(owner == w);
       assert(status != COMPLETED);
       lease = true;
       wlive[w] = true;
       r = OK
    :: !fenced(wtok[w]) -> r = LEASE_LOST
    fi
  }
}

/* A worker: an at-least-once consumer. A delivery it cannot settle now is
 * redelivered (the loop). Worker 0 is the fair, live one: it never crashes. */
proctype Worker(byte w) {
  mtype r;
deliver:
  do
  :: claim(w, r);
     if
     :: r == ACQUIRED -> break
     :: r == DONE || r == FAILED -> goto ack
     :: r == IN_PROGRESS -> skip  /* nak: redelivered later */
     fi
  od;
  /* The handler runs under wtok[w]. */
  if
  :: atomic {
       w != 0 && fault_left ->  /* crash: the process and its token are gone */
       faults++;
       orphan = orphan || owner == w;
       wtok[w] = 0;
       wlive[w] = false
     };
     goto deliver  /* the broker redelivers to a fresh process */
  :: true -> skip
  fi;
  if
  :: extend(w, r);  /* heartbeat; a handler that lost its lease stops */
     if
     :: r == LEASE_LOST -> wtok[w] = 0; wlive[w] = false; goto deliver
     :: r != LEASE_LOST -> skip
     fi
  :: true -> skip
  fi;
  if
  :: atomic { fault_left -> faults++ };  /* a retryable handler error */
     fail(w, false, r);
     wtok[w] = 0; wlive[w] = false; goto deliver
  :: fail(w, true, r)
  :: complete(w, r)
  fi;
  wtok[w] = 0;
  wlive[w] = false;
  if
  :: r == LEASE_LOST -> goto deliver  /* fenced: redelivered; the next claim sees who won */
  :: r != LEASE_LOST -> skip
  fi;
ack:
  if
  :: w == 0 -> acked0 = true
  :: w != 0 -> skip
  fi
}

/* The environment: lease expiry of a crashed owner (always, eventually),
 * and within the fault budget: an owner frozen past its lease, TTL expiry,
 * delete. */
active proctype Environment() {
  do
  :: atomic { status == PROCESSING && lease && orphan -> lease = false }
  :: atomic { status == PROCESSING && lease && !orphan && fault_left ->
       faults++; lease = false; wlive[owner] = false }
  :: atomic { fault_left && status != ABSENT && !(status == PROCESSING && lease) ->
       /* TTL: never while a lease is live; the expired row keeps its token */
       faults++; status = ABSENT; owner = NOBODY; orphan = false }
  :: atomic { fault_left && status != ABSENT ->
       /* delete (idem delete, sweep). Deleting under a live lease hands the
        * key to the next claim: that lease ends here; the old owner's token
        * stays fenced. */
       faults++;
#ifndef BREAK_FLOOR
       if
       :: token > floor -> floor = token
       :: token <= floor -> skip
       fi;
#endif
       if
       :: owner != NOBODY -> wlive[owner] = false
       :: owner == NOBODY -> skip
       fi;
       status = ABSENT; token = 0; lease = false; owner = NOBODY; orphan = false }
  od
}

init {
  byte i = 0;
  atomic {
    do
    :: i < WORKERS -> run Worker(i); i++
    :: i >= WORKERS -> break
    od
  }
}

ltl one_holder { [] !((wlive[0] && wlive[1]) || (wlive[0] && wlive[2]) || (wlive[1] && wlive[2])) }
ltl completes { <> acked0 }
