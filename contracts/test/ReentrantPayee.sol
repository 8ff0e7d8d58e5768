// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Actor} from "./Actor.sol";

/// @title ReentrantPayee
/// @notice Test-only attacker: whenever it receives ether it calls back into the market with a preset call
///         (e.g. withdraw() again), and records whether that re-entry succeeded and its revert selector.
contract ReentrantPayee is Actor {
    /// @notice Calldata replayed into the market from receive() (empty: no attack).
    bytes public attack;
    /// @notice Re-entry attempts made.
    uint256 public attempts;
    /// @notice Re-entries that succeeded.
    uint256 public successes;
    /// @notice Selector of the last re-entry's revert (zero when it succeeded or reverted without data).
    bytes4 public lastError;

    constructor(address market_) Actor(market_) {}

    /// @notice Set the call replayed on every payment received.
    /// @param data ABI-encoded market call (empty to stop attacking).
    function setAttack(bytes calldata data) external {
        attack = data;
    }

    receive() external payable {
        if (attack.length == 0) return;
        attempts += 1;
        (bool ok, bytes memory ret) = market.call(attack);
        if (ok) {
            successes += 1;
            lastError = bytes4(0);
        } else {
            bytes4 selector;
            if (ret.length >= 4) {
                assembly ("memory-safe") {
                    selector := mload(add(ret, 32))
                }
            }
            lastError = selector;
        }
    }
}
