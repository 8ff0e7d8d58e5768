// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title Actor
/// @notice Test-only base: a contract account that takes part in the market (as requester, provider or
///         validator) by forwarding calls, so the attack contracts below can hold tasks and credits.
abstract contract Actor {
    /// @notice The market this actor talks to.
    address public immutable market;

    constructor(address market_) {
        market = market_;
    }

    /// @notice Forward `data` (with the attached value) to the market, bubbling up its revert data.
    /// @param data ABI-encoded market call.
    /// @return ret The market's return data.
    function act(bytes calldata data) external payable returns (bytes memory ret) {
        bool ok;
        (ok, ret) = market.call{value: msg.value}(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
    }
}
