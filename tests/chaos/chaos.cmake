# The chaos harness (idem_chaos), its history checker and the checker's own
# tests. See docs/testing.md.
if(TARGET idem_sqlite)
  find_package(CLI11 CONFIG REQUIRED)

  add_library(idem_chaos_checker STATIC ${CMAKE_CURRENT_LIST_DIR}/history.cpp ${CMAKE_CURRENT_LIST_DIR}/checker.cpp)
  target_include_directories(idem_chaos_checker PUBLIC ${PROJECT_SOURCE_DIR}/tests)
  target_compile_features(idem_chaos_checker PUBLIC cxx_std_20)
  target_link_libraries(idem_chaos_checker PRIVATE idem_build_flags)

  add_executable(idem_chaos
    ${CMAKE_CURRENT_LIST_DIR}/main.cpp
    ${CMAKE_CURRENT_LIST_DIR}/harness.cpp
    ${CMAKE_CURRENT_LIST_DIR}/worker.cpp
    ${CMAKE_CURRENT_LIST_DIR}/store_env.cpp
    ${CMAKE_CURRENT_LIST_DIR}/unfenced_store.cpp)
  target_link_libraries(idem_chaos PRIVATE idem_chaos_checker idem::idem idem_test_support SQLite::SQLite3
                                           CLI11::CLI11 Threads::Threads idem_build_flags)
  if(TARGET idem_redis_test_support)
    target_link_libraries(idem_chaos PRIVATE idem_redis_test_support)
    target_compile_definitions(idem_chaos PRIVATE IDEM_CHAOS_HAVE_REDIS=1)
  endif()
  if(TARGET idem_postgres_test_support)
    target_link_libraries(idem_chaos PRIVATE idem_postgres_test_support idem::postgres)
    target_compile_definitions(idem_chaos PRIVATE IDEM_CHAOS_HAVE_POSTGRES=1)
  endif()

  idem_add_test(NAME chaos_checker_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/checker_test.cpp
    LABELS unit
    DEPS idem_chaos_checker
    TIMEOUT 60)

  # idem_add_chaos_run(<name> <label> <args...>): one ctest entry running
  # `idem_chaos run <args>`; exit 77 (server binary missing) is a skip.
  function(idem_add_chaos_run name)
    add_test(NAME ${name} COMMAND idem_chaos run ${ARGN})
    set_tests_properties(${name} PROPERTIES LABELS chaos TIMEOUT 240 SKIP_RETURN_CODE 77)
  endfunction()

  # Short runs for CI (about a minute each); tools/chaos.sh runs long ones.
  # --freeze-rate: workers also freeze themselves between effect and
  # completion, so a run is sure to see stale completions fenced (a freeze from
  # outside lands there only by chance; one loaded run saw none).
  idem_add_chaos_run(chaos_sqlite --store sqlite --seconds 45 --seed 1201 --freeze-rate 0.015)
  idem_add_chaos_run(chaos_planted_bug --store sqlite --seconds 12 --seed 1202 --faults worker-stop
                     --planted-bug unfenced --expect-violation stale-write)
  if(TARGET idem_redis_test_support)
    idem_add_chaos_run(chaos_redis --store redis --seconds 40 --seed 1203 --freeze-rate 0.015)
    # Failovers under load: claims, completions and failures wait for the
    # replica (wait_replicas=1), and a settled record is reported only once
    # the replica has it, so a failover loses nothing acknowledged
    # (docs/testing.md, "Findings"). No worker-stop here: a 30 s run holds too
    # few freezes to be sure of a fenced write (chaos_redis and chaos_sqlite
    # cover fencing); a fault every 0.35 s on average gives 4 failovers.
    # About 45 s.
    idem_add_chaos_run(chaos_redis_sentinel --store redis-sentinel --seconds 30 --seed 1204 --fault-gap-ms 350
                       --fault-rounds --faults worker-kill,crash,store)
  endif()
  if(TARGET idem_postgres_test_support)
    # Transactional mode: zero duplicated effects, with the server killed,
    # restarted and frozen. Workers also freeze themselves inside their open
    # transaction (--freeze-rate): a freeze from outside lands there only by
    # chance, and the run must see a stale commit fenced.
    # worker-kill is listed twice (drawn twice as often): restarts hold the
    # harness for seconds, a 25 s run holds about 20 faults, and one run in
    # three drew no worker kill at all.
    idem_add_chaos_run(chaos_postgres --store postgres --seconds 25 --seed 1205 --freeze-rate 0.015
                       --faults worker-kill,worker-kill,worker-stop,crash,store)
    # The checker must catch an effect committed apart from its completion.
    idem_add_chaos_run(chaos_postgres_planted_bug --store postgres --seconds 8 --seed 1206 --faults worker-kill,crash
                       --planted-bug split-commit --expect-violation duplicate-effect)
  endif()
endif()
