"""The order saga's five steps in Python, in one component (`python_orders`): the same
steps as the Rust plugins in `plugins/examples`, against the same services, so a workflow
can take each step from any language. Built with

    componentize-py -d ../../../wit -w step-plugin componentize app -p . -p ../sdk -o orders.wasm
"""

import inventory
import order
import payment
import send_confirmation
import validate_user
from flowhost import Step

SagaStep = (
    Step()
    .include(validate_user.step)
    .include(inventory.step)
    .include(payment.step)
    .include(order.step)
    .include(send_confirmation.step)
    .export()
)
