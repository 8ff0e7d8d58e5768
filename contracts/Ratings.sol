// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IRatings} from "./interfaces/IRatings.sol";

/// @title Ratings
/// @notice Rating statistics per worker, written only by the TaskMarket that deployed this contract.
/// @dev One packed slot per worker (sum | count | tracked). The market's state machine finalizes each task once,
///      so no per-task mapping is needed here to enforce one rating per task.
contract Ratings is IRatings {
    struct Stats {
        uint64 sum;
        uint64 count;
        bool tracked; // keeps the slot non-zero so the first rating costs as much as the next ones
    }

    /// @inheritdoc IRatings
    address public immutable market;

    mapping(address worker => Stats) private _stats;

    constructor() {
        market = msg.sender;
    }

    modifier onlyMarket() {
        if (msg.sender != market) revert Ratings__NotMarket(msg.sender);
        _;
    }

    /// @inheritdoc IRatings
    function track(address worker) external onlyMarket {
        if (_stats[worker].tracked) return;
        _stats[worker].tracked = true;
        emit WorkerTracked(worker);
    }

    /// @inheritdoc IRatings
    function rate(address worker, uint256 taskId, address rater, uint8 rating) external onlyMarket {
        if (rating == 0 || rating > 5) revert Ratings__InvalidRating(rating);
        Stats storage s = _stats[worker];
        // uint64 cannot overflow in practice (2^64 ratings); checked arithmetic would revert rather than wrap.
        s.sum += rating;
        s.count += 1;
        s.tracked = true;
        emit Rated(worker, taskId, rater, rating);
    }

    /// @inheritdoc IRatings
    function stats(address worker) external view returns (uint256 sum, uint256 count, uint256 averageMilli) {
        Stats memory s = _stats[worker];
        sum = s.sum;
        count = s.count;
        averageMilli = count == 0 ? 0 : (sum * 1000) / count;
    }
}
