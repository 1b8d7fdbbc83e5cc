# The protocol model (docs/model/idem.pml): spin checks its safety and
# liveness properties and must find each planted bug. A few seconds; needs
# spin and a C compiler (tools/check-model.sh exits 77, a skip, without them).
add_test(NAME model_spin COMMAND bash ${PROJECT_SOURCE_DIR}/tools/check-model.sh)
set_tests_properties(model_spin PROPERTIES LABELS model TIMEOUT 180 SKIP_RETURN_CODE 77)
