"""The service face's errors: `{"error_code": "ModelArts.xxxx", "error_msg": "..."}` with an HTTP
status. The codes are stable (clients and tests match on them); the table below is the contract.

| code            | status | meaning                                                         |
|-----------------|--------|-----------------------------------------------------------------|
| ModelArts.0101  | 400    | the body is not valid JSON / not an object                      |
| ModelArts.0102  | 400    | a field has the wrong type, is missing, or is unknown           |
| ModelArts.0103  | 415    | the body is not application/json                                |
| ModelArts.0104  | 401    | missing, unknown, revoked or expired credential                 |
| ModelArts.0105  | 403    | the credential's project is not the path's, or lacks a role     |
| ModelArts.0106  | 404    | no such route                                                   |
| ModelArts.0107  | 405    | method not allowed                                              |
| ModelArts.0108  | 413    | body too large                                                  |
| ModelArts.3001  | 400    | service_name is not 1-64 characters                             |
| ModelArts.3002  | 400    | description longer than 100 or contains !<>=&"'                 |
| ModelArts.3003  | 400    | infer_type is not real-time, batch or edge                      |
| ModelArts.3004  | 400    | vpc_id without security_group_id and subnet_network_id          |
| ModelArts.3005  | 400    | cluster_id / pool_name names no known node pool                 |
| ModelArts.3006  | 400    | config is empty, or batch has more than one model               |
| ModelArts.3007  | 400    | weight missing (real-time) or not an integer 0-100              |
| ModelArts.3008  | 400    | real-time weights do not sum to 100                             |
| ModelArts.3009  | 400    | the same model (version) appears twice in one service           |
| ModelArts.3010  | 400    | unknown specification                                           |
| ModelArts.3011  | 400    | specification custom without custom_spec (or custom_spec else)  |
| ModelArts.3012  | 400    | custom_spec values out of range                                 |
| ModelArts.3013  | 400    | custom specification outside a dedicated pool                   |
| ModelArts.3014  | 400    | instance_count below 1 or above the project's maximum           |
| ModelArts.3015  | 400    | deploy_timeout_in_seconds out of range                          |
| ModelArts.3016  | 400    | schedule invalid (type, time_unit, duration; real-time only)    |
| ModelArts.3017  | 400    | smn_notification topic does not exist                           |
| ModelArts.3018  | 400    | smn_notification events not among 1, 3, 7, 11                  |
| ModelArts.3019  | 400    | log_volume / persistent_volumes without a dedicated pool        |
| ModelArts.3020  | 400    | max_surge / max_unavailable not > 0 (or both 0)                 |
| ModelArts.3021  | 400    | batch fields missing or invalid (src_path, dest_path, ...)      |
| ModelArts.3022  | 400    | edge service without nodes                                      |
| ModelArts.3023  | 400    | envs invalid (names, sizes)                                     |
| ModelArts.3024  | 400    | log_report_channels invalid                                     |
| ModelArts.3025  | 400    | rollout invalid (strategy, steps, thresholds)                   |
| ModelArts.3026  | 400    | resources not available here (GPU / Ascend)                     |
| ModelArts.3027  | 400    | termination_grace_period_seconds out of range                   |
| ModelArts.3028  | 404    | model_id not found in the project                               |
| ModelArts.3029  | 409    | model not ready (its files are not committed)                   |
| ModelArts.3030  | 400    | websocket_upgrade / log channels cannot be changed once enabled |
| ModelArts.3031  | 400    | a field only batch/edge/real-time services take                 |
| ModelArts.3501  | 404    | service not found                                               |
| ModelArts.3502  | 409    | the service's state does not allow this                         |
| ModelArts.3503  | 409    | the service changed meanwhile; retry                            |
| ModelArts.3504  | 409    | an update is already rolling out                                |
| ModelArts.3520  | 501    | the infer_type's engine is not available                        |
| ModelArts.3601  | 400    | model registration invalid (name, type, artifact)               |
| ModelArts.3602  | 404    | model not found                                                 |
| ModelArts.3603  | 409    | model in use / exists                                           |
| ModelArts.3701  | 409    | service not running (inference)                                 |
| ModelArts.3702  | 503    | no ready instance (inference)                                   |
| ModelArts.0500  | 500    | unexpected; logged                                              |
| ModelArts.0503  | 503    | a platform backend is unavailable                               |
"""

from __future__ import annotations

from modelfleet.control.errors import ControlError


class ServiceError(ControlError):
    """An error with its face code. Raised by the face's validation and translation."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status


def bad(code: str, message: str) -> ServiceError:
    return ServiceError(400, code, message)


def error_body(code: str, message: str) -> dict[str, str]:
    return {"error_code": code, "error_msg": message}


# control-plane codes (control.errors) -> the face's codes
CONTROL_CODES: dict[str, str] = {
    "model_not_found": "ModelArts.3028",
    "model_not_ready": "ModelArts.3029",
    "deployment_not_found": "ModelArts.3501",
    "service_not_found": "ModelArts.3501",
    "invalid_state": "ModelArts.3502",
    "version_conflict": "ModelArts.3503",
    "concurrent_update": "ModelArts.3503",
    "deployment_exists": "ModelArts.3503",
    "model_in_use": "ModelArts.3603",
    "model_exists": "ModelArts.3603",
    "unauthorized": "ModelArts.0104",
    "forbidden": "ModelArts.0105",
    "missing_role": "ModelArts.0105",
    "payload_too_large": "ModelArts.0108",
    "backend_unavailable": "ModelArts.0503",
    "invalid_model_file": "ModelArts.3601",
    "digest_mismatch": "ModelArts.3601",
    "signature_mismatch": "ModelArts.3601",
}

STATUS_CODES: dict[int, str] = {
    400: "ModelArts.0102",
    401: "ModelArts.0104",
    403: "ModelArts.0105",
    404: "ModelArts.0106",
    405: "ModelArts.0107",
    409: "ModelArts.3502",
    413: "ModelArts.0108",
    415: "ModelArts.0103",
    429: "ModelArts.0429",
    500: "ModelArts.0500",
    501: "ModelArts.3520",
    503: "ModelArts.0503",
}


def face_code(e: ControlError) -> str:
    if e.code.startswith("ModelArts."):
        return e.code
    return CONTROL_CODES.get(e.code, STATUS_CODES.get(e.status, "ModelArts.0500"))
